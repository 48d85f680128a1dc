#!/usr/bin/env python3
"""tract vs onnxruntime on the same ONNX age/gender files, in one run.

Times each file with `agecam-host time-models` (tract, one thread, batch 1, as the device runs
it) and with onnxruntime (CPU provider, one intra-op and one inter-op thread, batch 1, all
graph optimisations), alternating the two runtimes per file, and prints milliseconds per face
and the tract/onnxruntime ratio (above 1: tract is slower).

    pip install onnxruntime numpy
    cargo build -p agecam-host
    python3 benches/ort_compare.py models/age_gender_f32.onnx models/age_gender_int8.onnx [more.onnx]

Not run in CI: onnxruntime is a comparison, not a dependency.
"""
import os
import statistics
import subprocess
import sys
import time

import numpy as np
import onnxruntime as ort

RUNS = 50


def tract_ms(host, paths):
    out = subprocess.run(
        [host, "time-models", *paths, "--runs", str(RUNS)],
        check=True, capture_output=True, text=True,
    ).stdout
    times = {}
    for line in out.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 3:
            times[fields[0]] = float(fields[2])  # model, bytes, ms per face
    return times


def ort_ms(path):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    inp = session.get_inputs()[0]
    size = int(session.get_modelmeta().custom_metadata_map.get("agecam.input_size", 96))
    x = np.random.default_rng(0).uniform(-1, 1, (1, 3, size, size)).astype(np.float32)
    session.run(None, {inp.name: x})
    samples = []
    for _ in range(RUNS):
        t = time.perf_counter()
        session.run(None, {inp.name: x})
        samples.append((time.perf_counter() - t) * 1e3)
    return statistics.median(samples)


def main():
    paths = sys.argv[1:]
    if not paths:
        sys.exit(__doc__)
    host = os.environ.get("AGECAM_HOST", "target/debug/agecam-host")
    if not os.path.exists(host):
        sys.exit(f"{host} not found: cargo build -p agecam-host (or set AGECAM_HOST)")
    print(f"{'model':<28}{'tract ms':>10}{'ort ms':>10}{'tract/ort':>11}")
    for path in paths:
        stem = os.path.splitext(os.path.basename(path))[0]
        t = tract_ms(host, [path])[stem]
        o = ort_ms(path)
        print(f"{stem:<28}{t:>10.2f}{o:>10.2f}{t / o:>10.2f}x")


if __name__ == "__main__":
    main()
