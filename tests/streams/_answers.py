"""Result messages as a one-step diabetes pipeline's worker sends them, for log agent tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engine import codecs
from engine.definition import ModelRef, ModelStep, PipelineSpec
from engine.pipeline import CompiledPipeline, load_pipeline
from engine.runtimes.base import sha256_file


def diabetes_pipeline(diabetes_onnx: Path) -> CompiledPipeline:
    ref = ModelRef(name="diabetes", version="1", sha=sha256_file(diabetes_onnx), runtime="onnx")
    return load_pipeline("v1", PipelineSpec(steps=[ModelStep(model=ref)]), lambda _: diabetes_onnx)


def answers(diabetes_onnx: Path, first: int, count: int) -> list[tuple[str, bytes]]:
    """`count` one-row result messages (request ids r<first>...), as the pipeline's last step
    sends them."""
    pipeline = diabetes_pipeline(diabetes_onnx)
    x = np.random.default_rng(0).random((count, 10), dtype=np.float32)
    out = []
    for i in range(count):
        result = pipeline.run(codecs.batch_from_arrays({"tensor": x[i : i + 1]}))
        out.append((f"r{first + i}", codecs.encode(result, codecs.ARROW_STREAM)))
    return out
