//! `quantize`: int8 versions of an exported model, and `--explain`.

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The float model written by `agecam-host export` (with --explain alone: any model).
    #[arg(long, value_name = "FILE.onnx")]
    model: PathBuf,
    /// Face crops (PNG/JPEG) for the integer form's activation ranges, e.g. CACHE/crops.
    #[arg(long, value_name = "DIR")]
    calib: Option<PathBuf>,
    /// Where to write the quantized model. Without it, --explain explains --model.
    #[arg(long, value_name = "FILE.onnx")]
    out: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "integer")]
    form: agecam_host::quantize::Form,
    /// Which convolutions the integer form computes in integers.
    #[arg(long, value_enum, default_value = "pointwise")]
    integer_layers: agecam_host::quantize::IntegerLayers,
    /// Keep the first convolution (reading the image) in float in the integer form.
    #[arg(long)]
    float_first: bool,
    /// Weight tensors with fewer values than this stay float (the small early layers are the
    /// most sensitive to rounding and a tiny share of the file); 0 quantizes every weight.
    #[arg(long, value_name = "N", default_value_t = agecam_host::quantize::DEFAULT_FLOAT_BELOW)]
    float_below: usize,
    #[arg(long, default_value = "percentile", value_parser = ["minmax", "percentile"])]
    calib_method: String,
    /// Percentile for --calib-method percentile (the mirror is used at the bottom).
    #[arg(long, default_value_t = 99.99)]
    percentile: f32,
    /// At most this many calibration images (evenly spaced over the sorted file names).
    #[arg(long, default_value_t = 500)]
    max_calib: usize,
    /// List each convolution/matmul tract runs, with its datum types (integer or float).
    #[arg(long)]
    explain: bool,
}

pub fn run(a: &Args) -> anyhow::Result<ExitCode> {
    use agecam_host::quantize::{self, CalibMethod, QuantizeOptions};
    let Some(out) = &a.out else {
        anyhow::ensure!(
            a.explain,
            "give --out FILE.onnx to quantize {}, or --explain to inspect it",
            a.model.display()
        );
        println!("{}", agecam::model::inspect::explain(&a.model)?);
        return Ok(ExitCode::SUCCESS);
    };
    anyhow::ensure!(
        (50.0..=100.0).contains(&a.percentile),
        "--percentile {} is out of range: give a value from 50 to 100, e.g. 99.99",
        a.percentile
    );
    let opts = QuantizeOptions {
        form: a.form,
        integer_layers: a.integer_layers,
        float_first: a.float_first,
        float_below: a.float_below,
        calib_method: match a.calib_method.as_str() {
            "minmax" => CalibMethod::MinMax,
            _ => CalibMethod::Percentile(a.percentile),
        },
    };
    let t = std::time::Instant::now();
    let report = quantize::quantize_file(&a.model, a.calib.as_deref(), a.max_calib, out, &opts)?;
    println!("{report}");
    println!(
        "wrote {} in {:.1} s",
        out.display(),
        t.elapsed().as_secs_f32()
    );
    if a.explain {
        println!("{}", agecam::model::inspect::explain(out)?);
    }
    Ok(ExitCode::SUCCESS)
}
