"""control/sdk: a model step's output map (no server)."""

from __future__ import annotations

from typing import Any

import pytest

from control.sdk.model import Model
from control.sdk.steps import RenamedOutputs, model_step, step_body

RECORD = {
    "name": "ocr",
    "version": "v2",
    "sha": "a" * 64,
    "runtime": "onnx",
    "outputs": [{"name": "fetch_name_0", "dtype": "float32", "shape": ["N", 97]}],
}


def _model(record: dict[str, Any] = RECORD) -> Model:
    return Model(None, record)  # type: ignore[arg-type]


def test_an_output_map_travels_in_the_step_body() -> None:
    step = model_step(_model(), {"fetch_name_0": "probs"})
    assert isinstance(step, RenamedOutputs) and step.name == "ocr"
    assert step_body(step) == {
        "kind": "model",
        "model": {"name": "ocr", "version": "v2"},
        "outputs": {"fetch_name_0": "probs"},
    }
    assert step_body(model_step(_model(), None)) == {
        "kind": "model",
        "model": {"name": "ocr", "version": "v2"},
    }


def test_a_map_of_outputs_the_model_does_not_have_is_refused_at_once() -> None:
    with pytest.raises(
        ValueError,
        match=r"model 'ocr' has no outputs \['softmax_11.tmp_0'\] "
        r"\(its outputs: \['fetch_name_0'\]\)",
    ):
        model_step(_model(), {"softmax_11.tmp_0": "probs"})
    python_step = _model({**RECORD, "runtime": "python", "outputs": []})
    assert model_step(python_step, {"anything": "x"}).outputs == {"anything": "x"}  # known later
