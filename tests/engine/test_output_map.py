"""engine/steps.py: a step's output map, so a post-processing step survives a model upgrade."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from control.demo.models import diabetes_regressor
from engine import codecs
from engine.definition import ModelRef, ModelStep, PipelineSpec
from engine.errors import InputMismatch, StepFailed
from engine.pipeline import load_pipeline
from engine.runtimes.base import sha256_file
from engine.runtimes.onnx import OnnxRuntime

X = np.random.default_rng(3).random((4, 10), dtype=np.float32)
POST = """
def process_data(input_data):
    return {"price": input_data["score"][:, 0] * 2}
"""


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("output-map")
    (root / "post.py").write_text(POST)
    return {"model": diabetes_regressor(root / "model.onnx"), "post": root / "post.py"}


def _ref(path: Path, name: str) -> ModelRef:
    if path.suffix == ".onnx":
        signature = OnnxRuntime.inspect(path)
        return ModelRef(
            name=name,
            version="1",
            sha=sha256_file(path),
            runtime="onnx",
            inputs=signature.inputs,
            outputs=signature.outputs,
        )
    return ModelRef(name=name, version="1", sha=sha256_file(path), runtime="python")


def _run(files: dict[str, Path], *steps: ModelStep) -> dict[str, list]:
    paths = {_ref(p, n).sha: p for n, p in files.items()}
    pipeline = load_pipeline("v1", PipelineSpec(steps=list(steps)), lambda r: paths[r.sha])
    return pipeline.run(codecs.batch_from_arrays({"tensor": X})).to_pydict()


def test_an_output_map_feeds_the_next_step_by_its_names(files: dict[str, Path]) -> None:
    model, post = _ref(files["model"], "model"), _ref(files["post"], "post")
    alone = _run(files, ModelStep(model=model))
    result = _run(
        files, ModelStep(model=model, outputs={"variable": "score"}), ModelStep(model=post)
    )
    np.testing.assert_allclose(
        result["out.price"], [row[0] * 2 for row in alone["out.variable"]], rtol=1e-6
    )
    renamed = _run(files, ModelStep(model=model, outputs={"variable": "score"}))
    assert "out.score" in renamed and "out.variable" not in renamed


def test_without_the_map_the_post_step_fails_on_the_models_own_name(files: dict[str, Path]) -> None:
    model, post = _ref(files["model"], "model"), _ref(files["post"], "post")
    with pytest.raises(StepFailed, match=r"step 'post' failed: KeyError: 'score'"):
        _run(files, ModelStep(model=model), ModelStep(model=post))


@pytest.mark.parametrize(
    ("outputs", "message"),
    [
        (
            {"softmax_11.tmp_0": "probs"},
            r"renames \['softmax_11.tmp_0'\], but the model's outputs "
            r"are \['variable'\]",
        ),
        ({"variable": "in.x"}, r"gives outputs the names \['in.x'\]; names may not"),
        ({"variable": ""}, r"gives outputs the names \[''\]"),
    ],
)
def test_bad_output_maps_are_refused_at_load(
    files: dict[str, Path], outputs: dict[str, str], message: str
) -> None:
    with pytest.raises(InputMismatch, match=message):
        _run(files, ModelStep(model=_ref(files["model"], "model"), outputs=outputs))


def test_a_python_steps_map_names_what_it_did_not_return(files: dict[str, Path]) -> None:
    model, post = _ref(files["model"], "model"), _ref(files["post"], "post")
    with pytest.raises(
        StepFailed,
        match=r"its output map renames \['probs'\], but it returned "
        r"\['price'\]",
    ):
        _run(
            files,
            ModelStep(model=model, outputs={"variable": "score"}),
            ModelStep(model=post, outputs={"probs": "p"}),
        )
