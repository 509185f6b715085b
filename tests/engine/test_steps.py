"""engine/steps.py: split and shadow steps run in process, no broker."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from control.demo.models import diabetes_regressor
from engine import codecs
from engine.definition import (
    ModelRef,
    ModelStep,
    PipelineSpec,
    RandomSplitStep,
    ShadowStep,
    SplitArm,
)
from engine.errors import InputMismatch
from engine.pipeline import CompiledPipeline, load_pipeline
from engine.runtimes.base import sha256_file

X = np.random.default_rng(5).random((300, 10), dtype=np.float32)

DOUBLE = """
import numpy as np
def process_data(input_data):
    return {"float_input": (input_data["tensor"] * 2).astype(np.float32)}
"""
HALVE = """
import numpy as np
def process_data(input_data):
    return {"float_input": (input_data["float_input"] * 0.5).astype(np.float32)}
"""
FAILS = """
def process_data(input_data):
    raise RuntimeError("challenger broke")
"""


@pytest.fixture(scope="module")
def refs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[ModelRef, Path]]:
    root = tmp_path_factory.mktemp("steps")
    (root / "double.py").write_text(DOUBLE)
    (root / "fails.py").write_text(FAILS)
    (root / "halve.py").write_text(HALVE)
    files = {
        "a": diabetes_regressor(root / "a.onnx", alpha=1.0),
        "b": diabetes_regressor(root / "b.onnx", alpha=0.01),
        "double": root / "double.py",
        "fails": root / "fails.py",
        "halve": root / "halve.py",
    }
    return {
        name: (
            ModelRef(
                name=name,
                version="1",
                sha=sha256_file(path),
                runtime="python" if path.suffix == ".py" else "onnx",
            ),
            path,
        )
        for name, path in files.items()
    }


def _load(refs: dict[str, tuple[ModelRef, Path]], *steps: object) -> CompiledPipeline:
    paths = {ref.sha: path for ref, path in refs.values()}
    return load_pipeline("v1", PipelineSpec(steps=list(steps)), lambda r: paths[r.sha], seed=0)


def _split(
    refs: dict[str, tuple[ModelRef, Path]],
    weights: tuple[float, ...],
    names: tuple[str, ...],
    hash_key: str | None = None,
) -> RandomSplitStep:
    return RandomSplitStep(
        arms=[SplitArm(weight=w, models=[refs[n][0]]) for w, n in zip(weights, names)],
        hash_key=hash_key,
    )


def _chosen(result: pa.RecordBatch) -> list[str]:
    return [json.loads(s)[-1]["name"] for s in result.column("out._model_split").to_pylist()]


def test_split_answers_every_row_in_input_order(refs: dict[str, tuple[ModelRef, Path]]) -> None:
    import onnxruntime as ort

    pipeline = _load(refs, _split(refs, (2, 1), ("a", "b")))
    result = pipeline.run(codecs.batch_from_arrays({"tensor": X}))
    assert result.column("metadata.row").to_pylist() == list(range(len(X)))
    chosen = _chosen(result)
    assert set(chosen) == {"a", "b"}
    out = codecs.column_to_ndarray(result.column("out.variable"))
    for name in ("a", "b"):
        rows = [i for i, c in enumerate(chosen) if c == name]
        expected = ort.InferenceSession(str(refs[name][1])).run(None, {"float_input": X[rows]})[0]
        np.testing.assert_allclose(out[rows], expected, rtol=1e-5)
    split = json.loads(result.column("out._model_split")[0].as_py())
    assert set(split[0]) == {"name", "version", "sha"}


@pytest.mark.parametrize("rows", [1, 2, 3])
def test_a_split_arm_that_draws_no_row_does_not_fail_the_request(
    refs: dict[str, tuple[ModelRef, Path]], rows: int
) -> None:
    """A request of a few rows often leaves an arm without one (2:1 weights, 2 rows: 5 times
    in 9); that arm's model once got a 0x0 tensor and failed the whole request."""
    paths = {ref.sha: path for ref, path in refs.values()}
    for seed in range(8):  # several draws, so that some leave an arm empty
        pipeline = load_pipeline(
            "v1",
            PipelineSpec(steps=[_split(refs, (2, 1), ("a", "b"))]),
            lambda r: paths[r.sha],
            seed=seed,
        )
        as_json_gives = pa.RecordBatch.from_pydict({"tensor": X[:rows].tolist()})  # list<double>
        result = pipeline.run(as_json_gives)
        assert result.column("metadata.row").to_pylist() == list(range(rows))
        assert codecs.column_to_ndarray(result.column("out.variable")).shape[0] == rows


def test_hash_key_keeps_a_key_on_one_model(refs: dict[str, tuple[ModelRef, Path]]) -> None:
    pipeline = _load(refs, _split(refs, (1, 1), ("a", "b"), hash_key="customer"))
    keys = [f"c{i % 37}" for i in range(len(X))]
    batch = pa.RecordBatch.from_arrays(
        [codecs.ndarray_to_column(X), pa.array(keys)], names=["tensor", "customer"]
    )
    chosen = _chosen(pipeline.run(batch.select(["tensor", "customer"])))
    by_key: dict[str, set[str]] = {}
    for key, model in zip(keys, chosen):
        by_key.setdefault(key, set()).add(model)
    assert all(len(models) == 1 for models in by_key.values())


def test_split_of_chains_inside_a_longer_pipeline(refs: dict[str, tuple[ModelRef, Path]]) -> None:
    double, halve, a, b = (refs[n][0] for n in ("double", "halve", "a", "b"))
    arms = RandomSplitStep(
        arms=[SplitArm(weight=1, models=[halve, a]), SplitArm(weight=1, models=[halve, b])]
    )
    pipeline = _load(refs, ModelStep(model=double), arms)
    result = pipeline.run(codecs.batch_from_arrays({"tensor": X[:50] / 4}))
    assert result.num_rows == 50
    splits = map(json.loads, result.column("out._model_split").to_pylist())
    assert {s[-1]["name"] for s in splits} == {"a", "b"}


def test_shadow_keeps_the_champion_and_logs_challengers(
    refs: dict[str, tuple[ModelRef, Path]],
) -> None:
    step = ShadowStep(champion=refs["a"][0], challengers=[refs["b"][0], refs["fails"][0]])
    champion_only = _load(refs, ModelStep(model=refs["a"][0]))
    batch = codecs.batch_from_arrays({"tensor": X[:20]})
    result = _load(refs, step).run(batch)
    expected = champion_only.run(batch)
    assert result.column("out.variable").equals(expected.column("out.variable"))
    assert "out_b.variable" in result.schema.names
    assert not any(n.startswith("out_fails.") for n in result.schema.names)


# -- the parts the stream layer runs apart --------------------------------
def test_a_challengers_log_rows(refs: dict[str, tuple[ModelRef, Path]]) -> None:
    step = ShadowStep(champion=refs["a"][0], challengers=[refs["b"][0]])
    pipeline = _load(refs, step)
    message = pipeline.start(codecs.batch_from_arrays({"tensor": X[:5]}))
    champion = pipeline.finish(pipeline.run_champion(0, message), started_ns=0)
    assert not any(n.startswith("out_") for n in champion.schema.names)
    rows = pipeline.finish_shadow(0, 0, pipeline.run_challenger(0, 0, message), started_ns=0)
    assert rows.column("metadata.shadow").to_pylist() == ["b"] * 5
    assert rows.column("metadata.row").to_pylist() == list(range(5))
    inline = pipeline.run(codecs.batch_from_arrays({"tensor": X[:5]}))
    assert rows.column("out_b.variable").equals(inline.column("out_b.variable"))
    assert rows.column("metadata.model").to_pylist() == [refs["b"][0].label()] * 5


def test_parts_of_the_wrong_kind_of_step_are_refused(
    refs: dict[str, tuple[ModelRef, Path]],
) -> None:
    pipeline = _load(refs, ModelStep(model=refs["a"][0]))
    message = pipeline.start(codecs.batch_from_arrays({"tensor": X[:2]}))
    with pytest.raises(TypeError, match="not a shadow"):
        pipeline.run_champion(0, message)


# -- the pipeline's input, matched to the first model by name -----------------------------
RENAME = """
def process_data(input_data):
    return {"features": input_data["tensor"]}
"""


@pytest.fixture(scope="module")
def signed(
    refs: dict[str, tuple[ModelRef, Path]], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[ModelRef, Path]]:
    """The refs with the signatures an upload records (the ONNX models' input is float_input)."""
    from engine.runtimes.onnx import OnnxRuntime

    rename = tmp_path_factory.mktemp("rename") / "rename.py"
    rename.write_text(RENAME)
    out = {
        "rename": (
            ModelRef(name="rename", version="1", sha=sha256_file(rename), runtime="python"),
            rename,
        )
    }
    for name in ("a", "b"):
        ref, path = refs[name]
        signature = OnnxRuntime.inspect(path)
        out[name] = (
            ref.model_copy(update={"inputs": signature.inputs, "outputs": signature.outputs}),
            path,
        )
    return out


@pytest.mark.parametrize(
    "columns",
    [
        {"float_input": X[:4]},
        {"tensor": X[:4]},
        {"tensor": X[:4], "customer": np.arange(4)},
        {f"feature{i}": X[:4, i] for i in range(10)},
    ],
    ids=["input-name", "tensor", "tensor-beside-a-key", "feature-columns"],
)
def test_the_first_model_takes_its_input_by_name_as_tensor_or_as_features(
    signed: dict[str, tuple[ModelRef, Path]], columns: dict[str, np.ndarray]
) -> None:
    result = _load(signed, ModelStep(model=signed["a"][0])).run(codecs.batch_from_arrays(columns))
    assert result.num_rows == 4


@pytest.mark.parametrize("kind", ["model", "split", "shadow"])
def test_a_misnamed_input_column_is_refused_not_answered(
    signed: dict[str, tuple[ModelRef, Path]], kind: str
) -> None:
    a, b = signed["a"][0], signed["b"][0]
    step = {
        "model": ModelStep(model=a),
        "shadow": ShadowStep(champion=a, challengers=[b]),
        "split": RandomSplitStep(arms=[SplitArm(weight=1, models=[a])]),
    }[kind]
    with pytest.raises(
        InputMismatch,
        match=r"model 'a' reads its input 'float_input' "
        r"\(float32\[None, 10\]\) but the data's column is named 'tensr': "
        r"name it 'float_input' or 'tensor'",
    ):
        _load(signed, step).run(codecs.batch_from_arrays({"tensr": X[:4]}))


def test_later_steps_take_their_input_under_any_name(
    signed: dict[str, tuple[ModelRef, Path]],
) -> None:
    pipeline = _load(signed, ModelStep(model=signed["rename"][0]), ModelStep(model=signed["a"][0]))
    result = pipeline.run(codecs.batch_from_arrays({"tensor": X[:4]}))
    assert (
        result.column("out.variable").to_pylist()
        == _load(signed, ModelStep(model=signed["a"][0]))
        .run(codecs.batch_from_arrays({"tensor": X[:4]}))
        .column("out.variable")
        .to_pylist()
    )
