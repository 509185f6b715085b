"""engine/runtimes: ONNX and Python steps, loaded from real files."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pyarrow as pa
import pytest

from engine import codecs
from engine.definition import ModelRef
from engine.errors import InputMismatch, ModelLoadError, StepFailed, UnknownRuntime
from engine.runtimes import get_runtime
from engine.runtimes.base import sha256_file
from engine.runtimes._slices import TRIALS, WARM_UP_CHUNKS, SliceSizer
from engine.runtimes.onnx import OnnxRuntime
from engine.runtimes.python import PythonRuntime

X = np.random.default_rng(0).random((5, 10), dtype=np.float32)


def _ref(path: Path, runtime: str = "onnx", name: str = "m") -> ModelRef:
    return ModelRef(name=name, version="v1", sha=sha256_file(path), runtime=runtime)  # type: ignore[arg-type]


@pytest.fixture
def onnx_runtime(diabetes_onnx: Path) -> OnnxRuntime:
    runtime = OnnxRuntime(_ref(diabetes_onnx))
    runtime.load(diabetes_onnx)
    return runtime


def _expected(diabetes_onnx: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(diabetes_onnx))
    return session.run(None, {"float_input": x})[0]


def test_inspect_reads_the_signature(diabetes_onnx: Path) -> None:
    signature = OnnxRuntime.inspect(diabetes_onnx)
    assert [(s.name, s.dtype) for s in signature.inputs] == [("float_input", "float32")]
    assert signature.inputs[0].shape[1] == 10
    assert [s.name for s in signature.outputs] == ["variable"]


@pytest.mark.parametrize("columns", ["by_name", "single_column", "scalar_columns"])
def test_onnx_predict_matches_raw_onnxruntime(
    onnx_runtime: OnnxRuntime, diabetes_onnx: Path, columns: str
) -> None:
    if columns == "by_name":
        batch = codecs.batch_from_arrays({"float_input": X})
    elif columns == "single_column":
        batch = codecs.batch_from_arrays({"tensor": X.astype(np.float64)})
    else:
        batch = pa.RecordBatch.from_pydict({f"f{i}": X[:, i] for i in range(10)})
    out = onnx_runtime.predict(batch)
    assert out.schema.names == ["variable"]
    np.testing.assert_allclose(
        codecs.column_to_ndarray(out.column(0)), _expected(diabetes_onnx, X), rtol=1e-5
    )


def test_a_batch_over_the_slice_size_runs_in_slices_with_the_same_answers(
    onnx_runtime: OnnxRuntime, diabetes_onnx: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    x = np.random.default_rng(1).random((23, 10), dtype=np.float32)
    calls = []
    run = onnx_runtime._session.run  # type: ignore[union-attr]

    def counted(names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        calls.append(len(next(iter(feeds.values()))))
        return run(names, feeds)

    monkeypatch.setattr(onnx_runtime, "_slices", SliceSizer("m", candidates=(10,)))
    monkeypatch.setattr(onnx_runtime._session, "run", counted)
    out = onnx_runtime.predict(codecs.batch_from_arrays({"float_input": x}))
    assert calls == [10, 10, 3]
    np.testing.assert_allclose(
        codecs.column_to_ndarray(out.column("variable")), _expected(diabetes_onnx, x), rtol=1e-5
    )


def test_big_chunks_settle_the_slice_size_and_answer_alike(
    onnx_runtime: OnnxRuntime, diabetes_onnx: Path
) -> None:
    x = np.random.default_rng(2).random((4096, 10), dtype=np.float32)
    expected = _expected(diabetes_onnx, x)
    for _ in range(WARM_UP_CHUNKS + 2 * TRIALS):  # each candidate timed TRIALS times by then
        out = onnx_runtime.predict(codecs.batch_from_arrays({"float_input": x}))
        np.testing.assert_allclose(
            codecs.column_to_ndarray(out.column("variable")), expected, rtol=1e-5
        )
    assert onnx_runtime._slices.chosen in (256, 1024)


def test_an_empty_batch_runs_once(onnx_runtime: OnnxRuntime) -> None:
    out = onnx_runtime.predict(codecs.batch_from_arrays({"float_input": X[:0]}))
    assert out.num_rows == 0


def test_wrong_width_names_the_input_and_shape(onnx_runtime: OnnxRuntime) -> None:
    batch = codecs.batch_from_arrays({"float_input": X[:, :3]})
    with pytest.raises(InputMismatch, match=r"float_input.*dimension 1 is 3, must be 10"):
        onnx_runtime.predict(batch)


def test_unmatched_columns_list_what_the_model_needs(onnx_runtime: OnnxRuntime) -> None:
    batch = pa.RecordBatch.from_pydict({"a": [[1.0, 2.0]], "b": [[1.0]]})
    with pytest.raises(InputMismatch, match=r"needs inputs \[float_input float32"):
        onnx_runtime.predict(batch)


def test_strings_cannot_feed_a_float_input(onnx_runtime: OnnxRuntime) -> None:
    batch = pa.RecordBatch.from_pydict({"float_input": [["x"] * 10]})
    with pytest.raises(InputMismatch, match="needs float32 values"):
        onnx_runtime.predict(batch)


def test_sha_mismatch_refuses_to_load(diabetes_onnx: Path) -> None:
    ref = _ref(diabetes_onnx).model_copy(update={"sha": "0" * 64})
    with pytest.raises(ModelLoadError, match="sha256"):
        OnnxRuntime(ref).load(diabetes_onnx)


def test_garbage_file_gives_onnxruntime_reason(tmp_path: Path) -> None:
    path = tmp_path / "bad.onnx"
    path.write_bytes(b"not an onnx graph")
    with pytest.raises(ModelLoadError, match="onnxruntime cannot load bad.onnx"):
        OnnxRuntime.inspect(path)


def test_gpus_without_cuda_is_a_clear_error(diabetes_onnx: Path) -> None:
    from engine.runtimes.base import RuntimeOptions

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has CUDA; the error path is for machines without it")
    with pytest.raises(ModelLoadError, match="no CUDA execution provider"):
        OnnxRuntime(_ref(diabetes_onnx)).load(diabetes_onnx, RuntimeOptions(device="cuda"))


def test_unknown_runtime_lists_the_valid_ones() -> None:
    with pytest.raises(UnknownRuntime, match="choose one of onnx, python"):
        get_runtime("onnx2")


PROCESS_DATA = """
import numpy as np
def process_data(input_data):
    x = input_data["tensor"]
    return {"tensor": (x * 2).astype(np.float32)}
"""

WALLAROO_JSON = """
def wallaroo_json(data):
    data = data.copy()
    data["double"] = data["x"] * 2
    return {"tensor_fields": ["double"], "double": data["double"].tolist()}
"""

RAISES = """
def process_data(input_data):
    raise ValueError("bad row")
"""


def _python(tmp_path: Path, source: str) -> PythonRuntime:
    path = tmp_path / "step.py"
    path.write_text(source)
    runtime = PythonRuntime(_ref(path, "python", "pre"))
    runtime.load(path)
    return runtime


def test_process_data_is_vectorised_columns(tmp_path: Path) -> None:
    out = _python(tmp_path, PROCESS_DATA).predict(codecs.batch_from_arrays({"tensor": X}))
    np.testing.assert_allclose(codecs.column_to_ndarray(out.column("tensor")), X * 2)


def test_wallaroo_json_tensor_fields(tmp_path: Path) -> None:
    out = _python(tmp_path, WALLAROO_JSON).predict(pa.RecordBatch.from_pydict({"x": [1.0, 2.5]}))
    assert out.column("double").to_pylist() == [2.0, 5.0]


def test_user_exception_names_step_and_error(tmp_path: Path) -> None:
    with pytest.raises(StepFailed, match=r"step 'pre' failed: ValueError: bad row"):
        _python(tmp_path, RAISES).predict(codecs.batch_from_arrays({"tensor": X}))


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("x = 1\n", "defines neither process_data"),
        ("import not_a_module_anywhere\n", "importing step.py failed: ModuleNotFoundError"),
        ("def process_data(:\n", "importing step.py failed: SyntaxError"),
    ],
)
def test_bad_modules_are_rejected_at_inspect(tmp_path: Path, source: str, message: str) -> None:
    path = tmp_path / "step.py"
    path.write_text(source)
    with pytest.raises(ModelLoadError, match=message):
        PythonRuntime.inspect(path)


def test_copy_of_file_with_same_bytes_loads(tmp_path: Path, diabetes_onnx: Path) -> None:
    copy = tmp_path / "copy.onnx"
    shutil.copy(diabetes_onnx, copy)
    runtime = OnnxRuntime(_ref(diabetes_onnx))
    runtime.load(copy)  # same sha, different path: fine
    out = runtime.predict(codecs.batch_from_arrays({"float_input": X}))
    np.testing.assert_allclose(
        codecs.column_to_ndarray(out.column("variable")), _expected(diabetes_onnx, X), rtol=1e-5
    )


def test_python_step_loads_from_an_artifact_path_without_suffix(tmp_path: Path) -> None:
    path = tmp_path / ("f" * 64)  # how the artifact store names files
    path.write_text(PROCESS_DATA)
    runtime = PythonRuntime(_ref(path, "python", "pre"))
    runtime.load(path)
    out = runtime.predict(codecs.batch_from_arrays({"tensor": X}))
    np.testing.assert_allclose(codecs.column_to_ndarray(out.column("tensor")), X * 2)
