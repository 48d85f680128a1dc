//! TFLite files: corrupt, truncated or hostile `.tflite` bytes read by the host tool's reader
//! (`agecam_host::tflite`), with every tensor's values, the ONNX conversion of
//! `convert-detector` and the `--init` weight mapping on what it accepts, must give an error,
//! never a panic.
#![no_main]

use agecam_host::tflite::{init, onnx, Model};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(model) = Model::parse(data) else {
        return;
    };
    for graph in &model.subgraphs {
        for tensor in &graph.tensors {
            let _ = model.values_f32(tensor);
            let _ = model.values_i64(tensor);
        }
    }
    let _ = onnx::convert(&model, &[]);
    let _ = init::read_convs(&model);
});
