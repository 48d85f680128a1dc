"""Makes golden.bin: the ORIGINAL BlazeFace short-range TFLite model's raw outputs on a fixed
synthetic input, computed once offline by TensorFlow Lite's reference kernels. The converter
test (src/model/tflite_onnx.rs) feeds the same input to the converted ONNX model under tract
and compares.

    python3 -m venv /tmp/litert && /tmp/litert/bin/pip install ai-edge-litert==2.3.0 numpy
    cd tests/data/blazeface
    /tmp/litert/bin/python make_golden.py face_detection_short_range.tflite

Input (NHWC 1x128x128x3): ((7x + 13y + 29c) mod 256) / 127.5 - 1.
golden.bin: little-endian f32, regressors [1,896,16] then classificators [1,896,1].
"""

import sys

import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType

interpreter = Interpreter(
    model_path=sys.argv[1],
    experimental_op_resolver_type=OpResolverType.BUILTIN_REF,
)
interpreter.allocate_tensors()
y, x, c = np.meshgrid(np.arange(128), np.arange(128), np.arange(3), indexing="ij")
pattern = ((7 * x + 13 * y + 29 * c) % 256).astype(np.float32) / 127.5 - 1.0
interpreter.set_tensor(interpreter.get_input_details()[0]["index"], pattern[None])
interpreter.invoke()
outputs = {d["name"]: interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()}
regressors = outputs["regressors"].astype("<f4")
classificators = outputs["classificators"].astype("<f4")
assert regressors.shape == (1, 896, 16) and classificators.shape == (1, 896, 1)
with open("golden.bin", "wb") as f:
    f.write(regressors.tobytes())
    f.write(classificators.tobytes())
print("max score logit", classificators.max(), "regressor range", regressors.min(), regressors.max())
