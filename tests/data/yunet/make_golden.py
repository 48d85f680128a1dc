"""Makes golden.bin: YuNet's raw outputs (models/yunet_s_dynamic.onnx) on a fixed synthetic
input, computed once by onnxruntime, a runtime outside tract. The detector's tests
(src/vision/yunet.rs) feed the same input to tract and compare.

    python3 -m venv /tmp/ort && /tmp/ort/bin/pip install onnxruntime==1.32.0 numpy
    cd tests/data/yunet && /tmp/ort/bin/python make_golden.py ../../../models/yunet_s_dynamic.onnx golden.bin

Input (NCHW 1x3x288x384, BGR bytes as YuNet takes them): (7x + 13y + 29c) mod 256.
Output: little-endian f32, the 12 outputs in the model's order (cls_8, cls_16, cls_32, obj_8,
obj_16, obj_32, bbox_8, bbox_16, bbox_32, kps_8, kps_16, kps_32), each flattened.
"""

import sys

import numpy as np
import onnxruntime as ort

model, out = sys.argv[1], sys.argv[2]
session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
c, y, x = np.meshgrid(np.arange(3), np.arange(288), np.arange(384), indexing="ij")
pattern = ((7 * x + 13 * y + 29 * c) % 256).astype(np.float32)[None]
outputs = session.run(None, {session.get_inputs()[0].name: pattern})
with open(out, "wb") as f:
    for o, value in zip(session.get_outputs(), outputs):
        print(o.name, value.shape, float(value.min()), float(value.max()))
        f.write(value.astype("<f4").tobytes())
