#!/usr/bin/env python3
"""Derives the shipped models/yolox_nano.onnx from the original export (fixed 416x416 input).

YOLOX is fully convolutional and this export's three Reshape shapes are already [1, 85, -1]
and its two Resize nodes use scales, so only the declared shapes pin the input to 416x416.
This script names the input's height and width axes ("height", "width") and the output's row
axis ("anchors"), drops the stored intermediate shapes, and checks that the result gives
bit-identical output to the original at 416x416 and that it runs at a 16:9 size. Weights and
nodes are untouched. pantau then cuts the tensor to the picture's aspect ratio (the manifest's
`shape = "fit"`) instead of padding a 16:9 frame to a square.

    python3 -m venv /tmp/onnxenv && /tmp/onnxenv/bin/pip install onnx onnxruntime numpy
    /tmp/onnxenv/bin/python scripts/onnx_dynamic_size.py ORIGINAL.onnx models/yolox_nano.onnx

ORIGINAL.onnx: sha256 695e750a5d5754bb5a8d5325643b59282191a7e7a564e435a415fd3c578eab14 (see
models/SOURCE.txt). Nothing here is used at run time.
"""
import hashlib
import sys

import numpy as np
import onnx
import onnxruntime as ort

ORIGINAL_SHA256 = "695e750a5d5754bb5a8d5325643b59282191a7e7a564e435a415fd3c578eab14"


def main(src, dst):
    digest = hashlib.sha256(open(src, "rb").read()).hexdigest()
    if digest != ORIGINAL_SHA256:
        sys.exit(f"{src}: sha256 {digest}, expected the original export {ORIGINAL_SHA256}")
    m = onnx.load(src)
    dims = m.graph.input[0].type.tensor_type.shape.dim
    for dim, name in zip(dims[2:], ("height", "width")):
        dim.Clear()
        dim.dim_param = name
    rows = m.graph.output[0].type.tensor_type.shape.dim[1]
    rows.Clear()
    rows.dim_param = "anchors"
    del m.graph.value_info[:]
    onnx.checker.check_model(m)
    onnx.save(m, dst)

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    before = ort.InferenceSession(src, options)
    after = ort.InferenceSession(dst, options)
    x = (np.random.default_rng(0).random((1, 3, 416, 416)) * 255).astype(np.float32)
    a = before.run(None, {"images": x})[0]
    b = after.run(None, {"images": x})[0]
    if a.shape != b.shape or np.abs(a - b).max() != 0.0:
        sys.exit("the derived model does not give the original's output at 416x416")
    wide = after.run(None, {"images": x[:, :, :288, :]})[0]
    want = sum((288 // s) * (416 // s) for s in (8, 16, 32))
    if wide.shape != (1, want, 85):
        sys.exit(f"at 416x288 the output is {wide.shape}, expected (1, {want}, 85)")
    print(f"{dst}: sha256 {hashlib.sha256(open(dst, 'rb').read()).hexdigest()}; "
          "identical output at 416x416, runs at 416x288")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
