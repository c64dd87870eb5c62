#!/usr/bin/env python3
"""Does batching frames of several cameras into one ONNX Runtime call pay on the CPU?

Makes a copy of models/yolox_nano.onnx with a dynamic batch axis (its three Reshape shapes
[1, 85, -1] become [0, 85, -1], i.e. "keep the input's batch"; input and output dim 0 become
"batch"), checks that batch 4 gives the same output as batch 1, and times, in CPU seconds and
wall seconds per image, the shipped batch-1 model against the dynamic one at batch 1 and 4,
with the threads pantau uses (2, spinning off).

    python3 -m venv /tmp/onnxenv && /tmp/onnxenv/bin/pip install onnx onnxruntime numpy
    /tmp/onnxenv/bin/python scripts/onnx_batch_check.py

Nothing here is used at run time; pantau ships the batch-1 model (see models/SOURCE.txt).
"""
import sys
import tempfile
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

MODEL = "models/yolox_nano.onnx"


def dynamic_copy(path):
    m = onnx.load(MODEL)
    for init in m.graph.initializer:
        a = numpy_helper.to_array(init)
        if a.dtype == np.int64 and a.tolist() == [1, 85, -1]:
            init.CopyFrom(numpy_helper.from_array(np.array([0, 85, -1], dtype=np.int64), init.name))
    m.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    m.graph.output[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    del m.graph.value_info[:]
    onnx.checker.check_model(m)
    onnx.save(m, path)


def timed(sess, x, n):
    for _ in range(3):
        sess.run(None, {"images": x})
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(n):
        sess.run(None, {"images": x})
    return (time.process_time() - cpu) / n / len(x), (time.perf_counter() - wall) / n / len(x)


def main():
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.log_severity_level = 3
    with tempfile.TemporaryDirectory() as d:
        dyn = f"{d}/dyn.onnx"
        dynamic_copy(dyn)
        fixed = ort.InferenceSession(MODEL, so, providers=["CPUExecutionProvider"])
        batch = ort.InferenceSession(dyn, so, providers=["CPUExecutionProvider"])
        rng = np.random.default_rng(1)
        x1 = (rng.random((1, 3, 416, 416)) * 255).astype(np.float32)
        x4 = np.concatenate([x1] * 4)
        diff = np.abs(batch.run(None, {"images": x4})[0][3] - fixed.run(None, {"images": x1})[0][0]).max()
        print(f"batch 4 vs batch 1 output: max abs difference {diff:.2e}")
        for rnd in range(3):
            c1, w1 = timed(fixed, x1, 40)
            cd, wd = timed(batch, x1, 40)
            c4, w4 = timed(batch, x4, 10)
            print(
                f"round {rnd + 1}: per image, CPU ms / wall ms: shipped batch 1 {c1 * 1e3:.1f} / {w1 * 1e3:.1f}"
                f"   dynamic batch 1 {cd * 1e3:.1f} / {wd * 1e3:.1f}   dynamic batch 4 {c4 * 1e3:.1f} / {w4 * 1e3:.1f}"
                f"   batch 4 / shipped: {c4 / c1:.2f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
