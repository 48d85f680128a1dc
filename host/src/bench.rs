//! `agecam-host bench-train`: training and inference throughput of MobileNetV2 (age + gender
//! heads) on random data. Prints per-step times, the custom ops' share, and a `RESULT` line
//! (`benches/compare.sh` compares it with PyTorch).

use super::mobilenet_v2::{loss, trainable_vars, Backend, Config, MobileNetV2};
use super::ops::prof;
use candle_core::{DType, Device, Result, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use std::time::Instant;

/// Runs the benchmark and prints its results.
pub fn bench_train(
    size: usize,
    batch: usize,
    steps: usize,
    warmup: usize,
    width: f64,
    backend: Backend,
    infer_steps: usize,
) -> Result<()> {
    let dev = Device::Cpu;
    let cfg = Config {
        width_mult: width,
        input_size: size,
        ..Config::default()
    };
    let (vm, model) = MobileNetV2::with_varmap(cfg, backend, &dev)?;
    let params = ParamsAdamW {
        lr: 1e-3,
        weight_decay: 0.0,
        ..ParamsAdamW::default()
    };
    let mut opt = AdamW::new(trainable_vars(&vm), params)?;
    let x = Tensor::randn(0f32, 1f32, (batch, 3, size, size), &dev)?;
    let ages = Tensor::rand(0f32, 101f32, batch, &dev)?
        .to_dtype(DType::U32)?
        .clamp(0u32, 100u32)?;
    let genders = Tensor::rand(0f32, 2f32, batch, &dev)?
        .to_dtype(DType::U32)?
        .clamp(0u32, 1u32)?;
    eprintln!(
        "backend={backend:?} size={size} batch={batch} steps={steps} warmup={warmup} threads={}",
        rayon::current_num_threads()
    );

    let (mut t_fwd, mut t_bwd, mut t_opt) = (0f64, 0f64, 0f64);
    let mut t_total = 0f64;
    for step in 0..warmup + steps {
        if step == warmup {
            prof::take();
        }
        let t0 = Instant::now();
        let (a, g) = model.forward_t(&x, true)?;
        let l = loss(&a, &g, &ages, &genders)?;
        let lv = l.to_scalar::<f32>()?;
        let t1 = Instant::now();
        let grads = l.backward()?;
        let t2 = Instant::now();
        opt.step(&grads)?;
        drop(grads);
        let t3 = Instant::now();
        eprintln!("step {step}: loss {lv:.4} {:.3}s", (t3 - t0).as_secs_f64());
        if step >= warmup {
            t_fwd += (t1 - t0).as_secs_f64();
            t_bwd += (t2 - t1).as_secs_f64();
            t_opt += (t3 - t2).as_secs_f64();
            t_total += (t3 - t0).as_secs_f64();
        }
    }
    let train_ips = (steps * batch) as f64 / t_total;
    let ops = prof::take();

    // Inference (eval mode, no graph kept).
    for _ in 0..warmup {
        model.forward_t(&x, false)?.0.to_vec2::<f32>()?;
    }
    let t0 = Instant::now();
    for _ in 0..infer_steps {
        model.forward_t(&x, false)?.0.to_vec2::<f32>()?;
    }
    let infer_ips = (infer_steps * batch) as f64 / t0.elapsed().as_secs_f64();

    let per = |t: f64| t / steps as f64;
    eprintln!(
        "per train step: forward {:.3}s backward {:.3}s optimiser {:.3}s",
        per(t_fwd),
        per(t_bwd),
        per(t_opt)
    );
    if backend == Backend::Custom {
        let accounted: f64 = ops.iter().map(|o| o.1).sum();
        for (name, t) in &ops {
            eprintln!("  {name:<14} {:.3}s/step", per(*t));
        }
        eprintln!("  {:<14} {:.3}s/step", "other", per(t_total - accounted));
    }
    println!(
        "RESULT impl=candle-{} size={size} batch={batch} train_ips={train_ips:.2} infer_ips={infer_ips:.2}",
        match backend {
            Backend::Custom => "custom",
            Backend::Plain => "plain",
        }
    );
    Ok(())
}
