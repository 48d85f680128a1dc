//! `bench-train`: training and inference throughput of MobileNetV2 on random data.

use agecam_host::mobilenet_v2::Backend;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long, default_value_t = 96)]
    size: usize,
    #[arg(long, default_value_t = 32)]
    batch: usize,
    #[arg(long, default_value_t = 10)]
    steps: usize,
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    #[arg(long, default_value_t = 1.0)]
    width: f64,
    /// `custom` (the fused ops) or `plain` (candle's own conv2d/batch norm, for comparison).
    #[arg(long, default_value = "custom")]
    backend: String,
    /// Inference batches to time (default: --steps).
    #[arg(long)]
    infer_steps: Option<usize>,
}

pub fn run(a: &Args) -> anyhow::Result<ExitCode> {
    let backend = match a.backend.as_str() {
        "custom" => Backend::Custom,
        "plain" => Backend::Plain,
        other => anyhow::bail!("--backend {other}: use custom or plain"),
    };
    agecam_host::bench::bench_train(
        a.size,
        a.batch,
        a.steps,
        a.warmup,
        a.width,
        backend,
        a.infer_steps.unwrap_or(a.steps),
    )?;
    Ok(ExitCode::SUCCESS)
}
