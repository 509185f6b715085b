"""engine/pipeline.py: a version's steps composed into plain functions, no broker."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pyarrow as pa
import pytest

from engine import codecs
from engine.definition import ModelRef, ModelStep, PipelineSpec, Validation
from engine.errors import ExpressionError, StepFailed
from engine.expressions import model_refs
from engine.pipeline import CompiledPipeline, load_pipeline
from engine.runtimes.base import sha256_file

X = np.random.default_rng(1).random((4, 10), dtype=np.float32)

SCALE = """
import numpy as np
def process_data(input_data):
    return {"float_input": (input_data["tensor"] * 0.5).astype(np.float32)}
"""


def _two_step_spec(
    tmp_path: Path, diabetes_onnx: Path, validations: list[Validation] | None = None
) -> tuple[PipelineSpec, dict[str, Path]]:
    pre = tmp_path / "pre.py"
    pre.write_text(SCALE)
    refs = [
        ModelRef(name="pre", version="1", sha=sha256_file(pre), runtime="python"),
        ModelRef(name="diabetes", version="1", sha=sha256_file(diabetes_onnx), runtime="onnx"),
    ]
    paths = {refs[0].sha: pre, refs[1].sha: diabetes_onnx}
    spec = PipelineSpec(steps=[ModelStep(model=r) for r in refs], validations=validations or [])
    return spec, paths


@pytest.fixture
def two_steps(tmp_path: Path, diabetes_onnx: Path) -> CompiledPipeline:
    spec, paths = _two_step_spec(tmp_path, diabetes_onnx)
    return load_pipeline("v1", spec, lambda ref: paths[ref.sha])


def test_run_chains_steps_and_carries_the_input(
    two_steps: CompiledPipeline, diabetes_onnx: Path
) -> None:
    result = two_steps.run(codecs.batch_from_arrays({"tensor": X}))
    assert result.schema.names[:3] == ["time", "in.tensor", "out.variable"]
    expected = ort.InferenceSession(str(diabetes_onnx)).run(None, {"float_input": X * 0.5})[0]
    np.testing.assert_allclose(
        codecs.column_to_ndarray(result.column("out.variable")), expected, rtol=1e-5
    )
    np.testing.assert_array_equal(codecs.column_to_ndarray(result.column("in.tensor")), X)
    assert result.column("check_failures").to_pylist() == [0] * 4
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
    assert sorted(after.schema.names) == ["_meta.row", "float_input", "in.tensor"]


def test_start_numbers_each_requests_rows_from_zero() -> None:
    batch = codecs.batch_from_arrays({"tensor": np.zeros((6, 10), np.float32)})
    assert CompiledPipeline.start(batch).column("_meta.row").to_pylist() == [0, 1, 2, 3, 4, 5]
    several = CompiledPipeline.start(batch, [1, 3, 0, 2])
    assert several.column("_meta.row").to_pylist() == [0, 0, 1, 2, 0, 1]
    assert several.column("in.tensor").equals(batch.column("tensor"))


def test_a_failing_step_raises_step_failed(two_steps: CompiledPipeline) -> None:
    with pytest.raises(StepFailed, match="pre"):
        two_steps.run(pa.RecordBatch.from_pydict({"other": [1.0]}))


def _validated(tmp_path: Path, diabetes_onnx: Path, **exprs: object) -> CompiledPipeline:
    validations = [Validation(name=n, expression=e.to_json()) for n, e in exprs.items()]  # type: ignore[attr-defined]
    spec, paths = _two_step_spec(tmp_path, diabetes_onnx, validations)
    return load_pipeline("v1", spec, lambda ref: paths[ref.sha])


def test_guide_style_validation_flags_rows_over_the_limit(
    tmp_path: Path, diabetes_onnx: Path
) -> None:
    _, outputs = model_refs("diabetes")
    pipeline = _validated(tmp_path, diabetes_onnx, **{"price-too-high": outputs[0][0] < 100.0})
    result = pipeline.run(codecs.batch_from_arrays({"tensor": X}))
    prices = codecs.column_to_ndarray(result.column("out.variable"))[:, 0]
    failing = prices >= 100.0
    assert result.column("anomaly.price-too-high").to_pylist() == failing.tolist()
    assert result.column("check_failures").to_pylist() == failing.astype(int).tolist()
    assert result.column("anomaly.count").to_pylist() == failing.astype(int).tolist()
    assert not any(n.startswith("_v.") for n in result.schema.names)


def test_several_validations_and_earlier_steps(tmp_path: Path, diabetes_onnx: Path) -> None:
    pre_in, pre_out = model_refs("pre")
    _, outputs = model_refs("diabetes")
    pipeline = _validated(
        tmp_path,
        diabetes_onnx,
        low=outputs["variable"][0] > -1e9,  # always passes
        scaled=pre_out[0][0] < pre_in[0][0] * 0.25,  # x*0.5 < x*0.25: fails
    )
    result = pipeline.run(codecs.batch_from_arrays({"tensor": X}))
    assert result.column("anomaly.low").to_pylist() == [False] * 4
    assert result.column("anomaly.scaled").to_pylist() == [True] * 4
    assert result.column("anomaly.count").to_pylist() == [1] * 4


def test_a_validation_on_a_model_not_in_the_pipeline_is_refused(
    tmp_path: Path, diabetes_onnx: Path
) -> None:
    _, outputs = model_refs("housing")
    with pytest.raises(ExpressionError, match=r"refers to \['housing'\]"):
        _validated(tmp_path, diabetes_onnx, bad=outputs[0][0] < 1.0)


def test_a_validation_that_cannot_evaluate_fails_the_request(
    tmp_path: Path, diabetes_onnx: Path
) -> None:
    _, outputs = model_refs("diabetes")
    pipeline = _validated(tmp_path, diabetes_onnx, deep=outputs[0][0][5] < 1.0)
    with pytest.raises(StepFailed, match="validation 'deep'"):
        pipeline.run(codecs.batch_from_arrays({"tensor": X}))
