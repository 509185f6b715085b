"""What the image benchmark runs: PNG files (and requests of them), a CNN-sized ONNX model
with random weights, and the Python steps around it (a Pillow pre-step with its own
requirements, a post-step)."""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa

from tests._png import png_bytes

SIDE = 128
"""The model's input: (N, 3, SIDE, SIDE) float32, normalised as ImageNet models expect."""
CLASSES = 10
MODEL_OUTPUT = "softmax_11.tmp_0"
"""What the model calls its output; the pipeline maps it to `probs` for the post-step."""

PRE = f"""
import io
import numpy as np
from PIL import Image

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)

def process_data(input_data):
    files = input_data["png"]
    out = np.empty((len(files), 3, {SIDE}, {SIDE}), np.float32)
    for i, png in enumerate(files):
        image = Image.open(io.BytesIO(bytes(png))).convert("RGB")
        image = image.resize(({SIDE}, {SIDE}), Image.BILINEAR)
        out[i] = ((np.asarray(image, np.float32) / 255 - MEAN) / STD).transpose(2, 0, 1)
    return {{"image": out}}
"""
"""Decode PNG bytes with Pillow, resize, normalise (Pillow comes from its requirements)."""
POST = f"""
import numpy as np

LABELS = np.array([f"class_{{i}}" for i in range({CLASSES})])

def process_data(input_data):
    probs = input_data["probs"]
    return {{"label": LABELS[probs.argmax(axis=1)], "confidence": probs.max(axis=1)}}
"""
"""Decode the model's output into a label and its confidence."""
ECHO = """
def process_data(input_data):
    return input_data
"""
"""A step that does nothing, to measure what running a step in its own process costs."""


def write_steps(root: Path) -> dict[str, Path]:
    """The pre-step archive (with requirements.txt), the post-step module and the no-op step
    as a module and as an archive without requirements."""
    root.mkdir(parents=True, exist_ok=True)
    paths = {
        "pre": root / "pre.zip",
        "post": root / "post.py",
        "echo_py": root / "echo.py",
        "echo_zip": root / "echo.zip",
    }
    with zipfile.ZipFile(paths["pre"], "w") as archive:
        archive.writestr("pre.py", PRE)
        archive.writestr("requirements.txt", "Pillow\n")
    paths["post"].write_text(POST)
    paths["echo_py"].write_text(ECHO)
    with zipfile.ZipFile(paths["echo_zip"], "w") as archive:
        archive.writestr("echo.py", ECHO)
    return paths


def cnn(path: Path, seed: int = 0) -> Path:
    """Three 3x3 conv + ReLU + max-pool stages (16, 32, 64 channels), global average pool,
    a dense layer and softmax: ~45 M multiply-adds per 128x128 image; random weights."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    nodes, weights, last, channels = [], [], "image", 3
    for i, width in enumerate((16, 32, 64)):
        w = rng.standard_normal((width, channels, 3, 3)) * np.sqrt(2 / (channels * 9))
        weights += [
            numpy_helper.from_array(w.astype(np.float32), f"w{i}"),
            numpy_helper.from_array(np.zeros(width, np.float32), f"b{i}"),
        ]
        nodes += [
            helper.make_node("Conv", [last, f"w{i}", f"b{i}"], [f"c{i}"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", [f"c{i}"], [f"r{i}"]),
            helper.make_node("MaxPool", [f"r{i}"], [f"p{i}"], kernel_shape=[2, 2], strides=[2, 2]),
        ]
        last, channels = f"p{i}", width
    dense = rng.standard_normal((channels, CLASSES)) * np.sqrt(1 / channels)
    weights += [
        numpy_helper.from_array(dense.astype(np.float32), "dense"),
        numpy_helper.from_array(np.zeros(CLASSES, np.float32), "bias"),
    ]
    nodes += [
        helper.make_node("GlobalAveragePool", [last], ["gap"]),
        helper.make_node("Flatten", ["gap"], ["flat"]),
        helper.make_node("Gemm", ["flat", "dense", "bias"], ["logits"]),
        helper.make_node("Softmax", ["logits"], [MODEL_OUTPUT], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "cnn",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, SIDE, SIDE])],
        [helper.make_tensor_value_info(MODEL_OUTPUT, TensorProto.FLOAT, ["N", CLASSES])],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())
    return path


def photos(count: int, seed: int = 0) -> list[bytes]:
    """PNG files of 200-320 x 200-320 pixels, smooth shapes with sensor-like noise (so they
    compress about as PNG photos do: 150-240 KB each); their sizes differ (a ragged column)."""
    rng = np.random.default_rng(seed)
    files = []
    for _ in range(count):
        h, w = rng.integers(200, 321, 2)
        y, x = np.mgrid[0:h, 0:w] / max(h, w)
        phase = rng.random(3) * 6
        base = np.stack([np.sin(6 * x + phase[c]) * np.cos(4 * y - phase[c]) for c in range(3)], -1)
        noise = rng.normal(0, 6, (h, w, 3))
        files.append(png_bytes(np.clip(127 + 100 * base + noise, 0, 255).astype(np.uint8)))
    return files


def png_batch(files: list[bytes]) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays([pa.array(files, pa.binary())], names=["png"])


def requests(files: list[bytes], per_request: int) -> Iterator[pa.RecordBatch]:
    """Batches of `per_request` files, round and round."""
    at = 0
    while True:
        yield png_batch([files[(at + i) % len(files)] for i in range(per_request)])
        at += per_request


# -- in process ---------------------------------------------------------------------------
