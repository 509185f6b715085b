"""engine/oip.py: Open Inference Protocol v2 tensors <-> record batches."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from engine import codecs
from engine.errors import CodecError
from engine.oip import InferenceRequest, Tensor, batch_to_outputs, request_to_batch


def test_request_tensors_become_columns_with_rows_first() -> None:
    request = InferenceRequest(inputs=[
        Tensor(name="tensor", shape=[2, 3], datatype="FP32", data=[1, 2, 3, 4, 5, 6]),
        Tensor(name="key", shape=[2], datatype="BYTES", data=["a", "b"])])
    batch = request_to_batch(request)
    tensor = codecs.column_to_ndarray(batch.column("tensor"))
    assert tensor.dtype == np.float32 and tensor.tolist() == [[1, 2, 3], [4, 5, 6]]
    assert batch.column("key").to_pylist() == ["a", "b"]


def test_outputs_round_trip_shapes_and_types() -> None:
    batch = pa.RecordBatch.from_arrays(
        [codecs.ndarray_to_column(np.array([[1.5], [2.5]], dtype=np.float32)),
         pa.array(["x", "y"])], names=["out.variable", "metadata.model"])
    out = {t.name: t for t in batch_to_outputs(batch)}
    assert (out["out.variable"].shape, out["out.variable"].datatype) == ([2, 1], "FP32")
    assert out["out.variable"].data == [1.5, 2.5]
    assert out["metadata.model"].datatype == "BYTES"


@pytest.mark.parametrize(("tensor", "message"), [
    (Tensor(name="t", shape=[2, 2], datatype="FP32", data=[1, 2, 3]), "needs 4"),
    (Tensor(name="t", shape=[1], datatype="COMPLEX", data=[1]), "datatype 'COMPLEX'"),
    (Tensor(name="t", shape=[], datatype="FP32", data=[1]), "first axis is the rows"),
])
def test_bad_tensors_say_what_is_wrong(tensor: Tensor, message: str) -> None:
    with pytest.raises(CodecError, match=message):
        request_to_batch(InferenceRequest(inputs=[tensor]))
