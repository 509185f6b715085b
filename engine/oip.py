"""Open Inference Protocol (v2) JSON tensors <-> record batches.

A request's `inputs` are named tensors with a shape whose first axis is the
row axis and row-major flat `data`; each becomes one column. A response's
`outputs` are the result columns the same way (text columns as BYTES).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyarrow as pa
from pydantic import BaseModel

from engine import codecs
from engine.errors import CodecError

_TO_NUMPY = {"BOOL": "bool", "INT8": "int8", "INT16": "int16", "INT32": "int32", "INT64": "int64",
             "UINT8": "uint8", "UINT16": "uint16", "UINT32": "uint32", "UINT64": "uint64",
             "FP16": "float16", "FP32": "float32", "FP64": "float64"}
_FROM_NUMPY = {v: k for k, v in _TO_NUMPY.items()}


class Tensor(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    data: list[Any]


class InferenceRequest(BaseModel):
    id: str | None = None
    inputs: list[Tensor]


class InferenceResponse(BaseModel):
    model_name: str
    model_version: str | None = None
    id: str | None = None
    outputs: list[Tensor]


def request_to_batch(request: InferenceRequest) -> pa.RecordBatch:
    arrays = {}
    for tensor in request.inputs:
        arrays[tensor.name] = _tensor_array(tensor)
    if not arrays:
        raise CodecError("an inference request needs at least one input tensor")
    return codecs.batch_from_arrays(arrays)


def _tensor_array(tensor: Tensor) -> np.ndarray:
    """One input tensor as an array of its shape (rows first), or CodecError saying why not."""
    if not tensor.shape or any(dim < 0 for dim in tensor.shape):
        raise CodecError(f"input {tensor.name!r} needs a shape of non-negative sizes whose first "
                         f"axis is the rows, got {tensor.shape}")
    if tensor.datatype != "BYTES" and tensor.datatype not in _TO_NUMPY:
        raise CodecError(f"input {tensor.name!r} has datatype {tensor.datatype!r}; use one of "
                         f"{', '.join([*_TO_NUMPY, 'BYTES'])}")
    dtype = object if tensor.datatype == "BYTES" else _TO_NUMPY[tensor.datatype]
    try:
        with np.errstate(over="raise", invalid="raise"):  # 1e300 as FP16 is an error, not inf
            array = np.array(tensor.data, dtype=dtype)
    except (ValueError, TypeError, ArithmeticError) as exc:
        raise CodecError(f"input {tensor.name!r}: its data are not {tensor.datatype} values in a "
                         f"flat list ({exc})") from exc
    needed = math.prod(tensor.shape)  # exact: numpy's product of huge sizes would wrap
    if array.ndim != 1 or array.size != needed:
        raise CodecError(f"input {tensor.name!r} has {array.size} values but shape "
                         f"{tensor.shape} needs {needed}: send the data flat, row-major")
    try:
        return array.reshape(tensor.shape)
    except (ValueError, OverflowError) as exc:  # [0, 2**40, 2**40]: no values, yet too big
        raise CodecError(f"input {tensor.name!r} has an impossible shape {tensor.shape}: {exc}"
                         ) from exc


def batch_to_outputs(batch: pa.RecordBatch) -> list[Tensor]:
    outputs = []
    for name, column in zip(batch.schema.names, batch.columns):
        try:
            array = codecs.column_to_ndarray(column, name=name)
        except CodecError:
            array = np.array([str(v) for v in column.to_pylist()], dtype=object)
        datatype = _FROM_NUMPY.get(array.dtype.name)
        if datatype is None:
            array = np.array([str(v) for v in array.reshape(len(array), -1)[:, 0]], dtype=object)
            datatype = "BYTES"
        outputs.append(Tensor(name=name, shape=list(array.shape), datatype=datatype,
                              data=array.reshape(-1).tolist()))
    return outputs
