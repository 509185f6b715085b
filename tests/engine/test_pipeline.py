"""engine/pipeline.py: a version's steps composed into plain functions, no broker."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pyarrow as pa
import pytest

from engine import codecs
from engine.definition import ModelRef, ModelStep, PipelineSpec
from engine.errors import StepFailed
from engine.pipeline import CompiledPipeline, load_pipeline
from engine.runtimes.base import sha256_file

X = np.random.default_rng(1).random((4, 10), dtype=np.float32)

SCALE = """
import numpy as np
def process_data(input_data):
    return {"float_input": (input_data["tensor"] * 0.5).astype(np.float32)}
"""


@pytest.fixture
def two_steps(tmp_path: Path, diabetes_onnx: Path) -> CompiledPipeline:
    pre = tmp_path / "pre.py"
    pre.write_text(SCALE)
    refs = [
        ModelRef(name="pre", version="1", sha=sha256_file(pre), runtime="python"),
        ModelRef(name="diabetes", version="1", sha=sha256_file(diabetes_onnx), runtime="onnx"),
    ]
    paths = {refs[0].sha: pre, refs[1].sha: diabetes_onnx}
    spec = PipelineSpec(steps=[ModelStep(model=r) for r in refs])
    return load_pipeline("v1", spec, lambda ref: paths[ref.sha])


def test_run_chains_steps_and_carries_the_input(two_steps: CompiledPipeline,
                                                diabetes_onnx: Path) -> None:
    result = two_steps.run(codecs.batch_from_arrays({"tensor": X}))
    assert result.schema.names[:3] == ["time", "in.tensor", "out.variable"]
    expected = ort.InferenceSession(str(diabetes_onnx)).run(None, {"float_input": X * 0.5})[0]
    np.testing.assert_allclose(codecs.column_to_ndarray(result.column("out.variable")), expected,
                               rtol=1e-5)
    np.testing.assert_array_equal(codecs.column_to_ndarray(result.column("in.tensor")), X)
    assert result.column("check_failures").to_pylist() == [[]] * 4
    assert result.column("anomaly.count").to_pylist() == [0] * 4
    assert set(result.column("metadata.pipeline_version").to_pylist()) == {"v1"}
    assert result.column("metadata.model").to_pylist()[0].startswith("diabetes@")


def test_step_by_step_equals_run(two_steps: CompiledPipeline) -> None:
    batch = codecs.batch_from_arrays({"tensor": X})
    message = two_steps.start(batch)
    for index in range(len(two_steps.steps)):
        message = two_steps.run_step(index, message)
    stepwise = two_steps.finish(message, started_ns=0)
    whole = two_steps.run(batch)
    assert stepwise.column("out.variable").equals(whole.column("out.variable"))


def test_runtimes_never_see_carried_columns(two_steps: CompiledPipeline) -> None:
    message = two_steps.start(codecs.batch_from_arrays({"tensor": X}))
    assert "in.tensor" in message.schema.names
    after = two_steps.run_step(0, message)
    assert sorted(after.schema.names) == ["float_input", "in.tensor"]


def test_a_failing_step_raises_step_failed(two_steps: CompiledPipeline) -> None:
    with pytest.raises(StepFailed, match="pre"):
        two_steps.run(pa.RecordBatch.from_pydict({"other": [1.0]}))
