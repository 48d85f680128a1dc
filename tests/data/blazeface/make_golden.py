"""Makes the golden files: an ORIGINAL BlazeFace TFLite model's raw outputs on a fixed
synthetic input, computed once offline by TensorFlow Lite's reference kernels. The converter
tests (host/src/tflite/onnx.rs) feed the same input to the converted ONNX model under tract
and compare.

    python3 -m venv /tmp/litert && /tmp/litert/bin/pip install ai-edge-litert==2.3.0 numpy
    cd tests/data/blazeface
    /tmp/litert/bin/python make_golden.py face_detection_short_range.tflite golden.bin
    /tmp/litert/bin/python make_golden.py face_detection_full_range.tflite golden_full_range.bin
    /tmp/litert/bin/python make_golden.py face_detection_back.tflite golden_back.bin

Input (NHWC 1xSxSx3, S the model's input size): ((7x + 13y + 29c) mod 256) / 127.5 - 1.
Output: little-endian f32, regressors [1,N,16] then classificators [1,N,1] (N anchors: 896 for
short-range and back, 2304 for full-range), in the model's output order.
"""

import sys

import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType

model, out = sys.argv[1], sys.argv[2]
interpreter = Interpreter(
    model_path=model,
    experimental_op_resolver_type=OpResolverType.BUILTIN_REF,
)
interpreter.allocate_tensors()
size = int(interpreter.get_input_details()[0]["shape"][1])
y, x, c = np.meshgrid(np.arange(size), np.arange(size), np.arange(3), indexing="ij")
pattern = ((7 * x + 13 * y + 29 * c) % 256).astype(np.float32) / 127.5 - 1.0
interpreter.set_tensor(interpreter.get_input_details()[0]["index"], pattern[None])
interpreter.invoke()
regressors, classificators = (
    interpreter.get_tensor(d["index"]).astype("<f4") for d in interpreter.get_output_details()
)
n = regressors.shape[1]
assert regressors.shape == (1, n, 16) and classificators.shape == (1, n, 1)
with open(out, "wb") as f:
    f.write(regressors.tobytes())
    f.write(classificators.tobytes())
print(size, n, "max score logit", classificators.max(), "regressor range", regressors.min(), regressors.max())
