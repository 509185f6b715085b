"""Ragged columns (rows of differing lengths): Python steps take them as one array per row,
ONNX models with a dynamic axis run rows of one shape together, and nothing is padded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pyarrow as pa
import pytest
from onnx import TensorProto, helper

from engine import codecs
from engine.definition import ModelRef
from engine.errors import CodecError, InputMismatch
from engine.runtimes.base import sha256_file
from engine.runtimes.onnx import OnnxRuntime
from engine.runtimes.python import PythonRuntime

ROWS = [np.arange(n, dtype=np.float32) + n for n in (3, 5, 3, 1)]


def _model(path: Path, length: int | str) -> OnnxRuntime:
    """x [N, length] float -> total [N] (sum of each row), echo [N, length] (x itself)."""
    graph = helper.make_graph(
        [
            helper.make_node("ReduceSum", ["x", "axes"], ["total"], keepdims=0),
            helper.make_node("Identity", ["x"], ["echo"]),
        ],
        "ragged",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", length])],
        [
            helper.make_tensor_value_info("total", TensorProto.FLOAT, ["N"]),
            helper.make_tensor_value_info("echo", TensorProto.FLOAT, ["N", length]),
        ],
        [helper.make_tensor("axes", TensorProto.INT64, [1], [1])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    signature = OnnxRuntime.inspect(path)
    runtime = OnnxRuntime(
        ModelRef(
            name="summer",
            version="1",
            sha=sha256_file(path),
            runtime="onnx",
            inputs=signature.inputs,
            outputs=signature.outputs,
        )
    )
    runtime.load(path)
    return runtime


def test_onnx_runs_ragged_rows_grouped_by_shape_in_input_order(tmp_path: Path) -> None:
    out = _model(tmp_path / "m.onnx", "L").predict(codecs.batch_from_arrays({"x": ROWS}))
    np.testing.assert_allclose(out.column("total").to_pylist(), [r.sum() for r in ROWS])
    echo = codecs.column_values(out.column("echo"))
    assert isinstance(echo, list)  # rows came out in several shapes: one array per row, as in
    for got, row in zip(echo, ROWS):
        np.testing.assert_array_equal(got, row)


def test_onnx_refuses_ragged_rows_on_a_fixed_axis_and_never_pads(tmp_path: Path) -> None:
    runtime = _model(tmp_path / "m.onnx", 3)
    with pytest.raises(
        InputMismatch,
        match=r"the codec refused column 'x' for input 'x' of "
        r"model 'summer': its rows have sizes 1 to 5 on axis 1, which the model "
        r"fixes at 3 .* weir never pads",
    ):
        runtime.predict(codecs.batch_from_arrays({"x": ROWS}))
    same = runtime.predict(codecs.batch_from_arrays({"x": [ROWS[0], ROWS[2]]}))
    assert same.column("total").to_pylist() == [12.0, 12.0]


RAGGED_STEP = """
import numpy as np

def process_data(input_data):
    rows = input_data["png_u8"]
    assert isinstance(rows, list) and all(isinstance(r, np.ndarray) for r in rows)
    return {"length": np.array([len(r) for r in rows]), "head": np.stack([r[:2] for r in rows])}
"""


def test_a_python_step_gets_a_ragged_column_as_one_array_per_row(tmp_path: Path) -> None:
    path = tmp_path / "pre.py"
    path.write_text(RAGGED_STEP)
    runtime = PythonRuntime(
        ModelRef(name="pre", version="1", sha=sha256_file(path), runtime="python")
    )
    runtime.load(path)
    files = [np.random.default_rng(n).integers(0, 255, n, np.uint8) for n in (2060, 4135)]
    out = runtime.predict(codecs.batch_from_arrays({"png_u8": files}))
    assert out.column("length").to_pylist() == [2060, 4135]
    assert out.column("head").to_pylist() == [f[:2].tolist() for f in files]


def test_only_a_row_that_is_itself_ragged_is_refused_and_the_codec_says_so() -> None:
    with pytest.raises(CodecError, match="the codec refused column 'x'"):
        codecs.batch_to_arrays(pa.RecordBatch.from_pydict({"x": [[[1], [1, 2]]]}), ragged=True)
