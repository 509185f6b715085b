"""Open Inference Protocol (v2): requests and responses <-> record batches.

A request's `inputs` are named tensors whose first axis is the row axis, with
row-major `data` in the JSON or, with Triton's binary tensor data extension,
as raw bytes after the JSON (`parameters.binary_data_size`); each becomes one
column. A response's `outputs` are the pipeline's model outputs by their own
names (`out.variable` answers as `variable`), filtered by the request's
`outputs`; every other result column but the echoed inputs (`time`,
`check_failures`, `anomaly.*`, `metadata.*`, `out._model_split`, shadow
outputs) goes into the response's `parameters`, as JSON text of its per-row
values (OIP parameters hold only scalars).
"""

from __future__ import annotations

import json
import math
import struct
from typing import Any

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ValidationError

from engine import codecs
from engine.columns import IN_PREFIX, META_VERSION, OUT_MODEL_SPLIT, OUT_PREFIX
from engine.definition import PipelineSpec, RandomSplitStep, ShadowStep, TensorSpec
from engine.errors import CodecError

_TO_NUMPY = {
    "BOOL": "bool",
    "INT8": "int8",
    "INT16": "int16",
    "INT32": "int32",
    "INT64": "int64",
    "UINT8": "uint8",
    "UINT16": "uint16",
    "UINT32": "uint32",
    "UINT64": "uint64",
    "FP16": "float16",
    "FP32": "float32",
    "FP64": "float64",
}
_FROM_NUMPY = {v: k for k, v in _TO_NUMPY.items()}
DATATYPES = (*_TO_NUMPY, "BYTES")
BINARY_SIZE = "binary_data_size"
"""A tensor's parameter: its data is this many bytes of the binary part, not JSON `data`."""
HEADER_LENGTH = "inference-header-content-length"
"""The HTTP header giving the length of the JSON part of a body with binary tensor data."""

Parameters = dict[str, str | int | float | bool]


class Tensor(BaseModel):
    """An input or output tensor; `data` is absent where it travels as binary."""

    name: str
    shape: list[int]
    datatype: str
    parameters: Parameters | None = None
    data: list[Any] | None = None


class RequestedOutput(BaseModel):
    """An entry of a request's `outputs`: which output to return, and how."""

    name: str
    parameters: Parameters | None = None


class InferenceRequest(BaseModel):
    id: str | None = None
    parameters: Parameters | None = None
    inputs: list[Tensor]
    outputs: list[RequestedOutput] | None = None


class InferenceResponse(BaseModel):
    model_name: str
    model_version: str | None = None
    id: str | None = None
    parameters: Parameters | None = None
    outputs: list[Tensor]


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(BaseModel):
    """`GET /v2/models/<name>`: a pipeline's inputs (its first model's) and outputs (its last's)."""

    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


# -- requests -----------------------------------------------------------------------------
def read_request(body: bytes, header_length: str | None = None) -> tuple[InferenceRequest, bytes]:
    """The request's JSON part, parsed, and the binary part after it (the header's value,
    the JSON part's length, tells them apart; without it the whole body is JSON)."""
    if header_length is not None and not (
        header_length.isdigit() and 0 < int(header_length) <= len(body)
    ):
        raise CodecError(
            f"{HEADER_LENGTH} is {header_length!r}: it must be the length of the "
            f"JSON part of the body, which has {len(body)} bytes"
        )
    split = len(body) if header_length is None else int(header_length)
    head, binary = body[:split], body[split:]
    try:
        return InferenceRequest.model_validate_json(head), binary
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors()
        )
        raise CodecError(
            f"not an Open Inference Protocol request ({problems}); send "
            '{"inputs": [{"name": ..., "shape": [...], "datatype": "FP32", '
            '"data": [...]}]}'
        ) from None


def request_to_batch(request: InferenceRequest, binary: bytes = b"") -> pa.RecordBatch:
    """One column per input tensor (first axis = rows)."""
    arrays, offset = {}, 0
    for tensor in request.inputs:
        if not tensor.shape or any(dim < 0 for dim in tensor.shape):
            raise CodecError(
                f"input {tensor.name!r} needs a shape of non-negative sizes whose "
                f"first axis is the rows, got {tensor.shape}"
            )
        if tensor.datatype not in DATATYPES:
            raise CodecError(
                f"input {tensor.name!r} has datatype {tensor.datatype!r}; use one of "
                f"{', '.join(DATATYPES)}"
            )
        size, left = (tensor.parameters or {}).get(BINARY_SIZE), len(binary) - offset
        if size is None:
            array = _from_json(tensor)
        elif isinstance(size, int) and not isinstance(size, bool) and 0 <= size <= left:
            array = _from_binary(tensor, binary[offset : offset + size])
            offset += size
        else:
            raise CodecError(
                f"input {tensor.name!r} claims {size!r} bytes of binary data but {left} are left"
            )
        count = math.prod(tensor.shape)  # exact: numpy's product of huge sizes would wrap
        if array.size != count:
            raise CodecError(
                f"input {tensor.name!r} has {array.size} values but shape "
                f"{tensor.shape} needs {count}: send the data flat, row-major"
            )
        try:
            arrays[tensor.name] = array.reshape(tensor.shape)
        except (ValueError, OverflowError) as exc:  # [0, 2**40, 2**40]: no values, too big
            raise CodecError(
                f"input {tensor.name!r} has an impossible shape {tensor.shape}: {exc}"
            ) from exc
    if not arrays:
        raise CodecError("an inference request needs at least one input tensor")
    if offset != len(binary):
        raise CodecError(
            f"the body has {len(binary) - offset} bytes of binary data that no input claims"
        )
    return codecs.batch_from_arrays(arrays)


def _from_json(tensor: Tensor) -> np.ndarray:
    if tensor.data is None:
        raise CodecError(f"input {tensor.name!r} has neither data nor {BINARY_SIZE}")
    data = np.asarray(tensor.data, dtype=object).reshape(-1)  # nested lists: row-major, flat
    if any(isinstance(value, list) for value in data):
        raise CodecError(
            f"input {tensor.name!r} has nested lists of different lengths; "
            "send flat row-major data with the shape"
        )
    if tensor.datatype == "BYTES":
        return data
    try:
        with np.errstate(over="raise", invalid="raise"):  # 1e300 as FP16 is an error, not inf
            return data.astype(_TO_NUMPY[tensor.datatype])
    except (TypeError, ValueError, ArithmeticError) as exc:
        raise CodecError(
            f"input {tensor.name!r} holds values that are not {tensor.datatype} ({exc})"
        ) from None


def _from_binary(tensor: Tensor, raw: bytes) -> np.ndarray:
    if tensor.datatype != "BYTES":
        dtype = np.dtype(_TO_NUMPY[tensor.datatype]).newbyteorder("<")
        if len(raw) % dtype.itemsize:
            raise CodecError(
                f"input {tensor.name!r} has {len(raw)} bytes of binary data, "
                f"not a whole number of {tensor.datatype} values"
            )
        return np.frombuffer(raw, dtype=dtype).astype(dtype.newbyteorder("="))
    items, offset = [], 0
    while offset < len(raw):  # each element: 4-byte little-endian length, then the bytes
        if offset + 4 > len(raw):
            raise CodecError(f"input {tensor.name!r}: binary BYTES data is cut short")
        (length,) = struct.unpack_from("<I", raw, offset)
        item = raw[offset + 4 : offset + 4 + length]
        if len(item) != length:
            raise CodecError(f"input {tensor.name!r}: binary BYTES data is cut short")
        items.append(_text(item))
        offset += 4 + length
    return np.array(items, dtype=object)


def _text(item: bytes) -> str | bytes:
    try:
        return item.decode()
    except UnicodeDecodeError:
        return item


# -- responses ------------------------------------------------------------------------------
def response_body(
    request: InferenceRequest, result: pa.RecordBatch, model_name: str
) -> tuple[bytes, int | None]:
    """The response to `request` (JSON, then any binary outputs) and the JSON part's length
    where binary data follows it (the `Inference-Header-Content-Length` header)."""
    outputs = _model_outputs(result)
    wanted = request.outputs or [RequestedOutput(name=name) for name in outputs]
    all_binary = bool((request.parameters or {}).get("binary_data_output"))
    tensors, blobs = [], []
    for choice in wanted:
        if choice.name not in outputs:
            raise CodecError(
                f"{choice.name!r} is not an output of pipeline {model_name!r}; "
                f"its outputs are {', '.join(map(repr, outputs)) or 'none'}"
            )
        tensor, raw = _output(choice.name, outputs[choice.name])
        if (choice.parameters or {}).get("binary_data", all_binary):
            tensor.parameters, tensor.data = {BINARY_SIZE: len(raw)}, None
            blobs.append(raw)
        tensors.append(tensor)
    versions = (
        result.column(META_VERSION).unique().to_pylist()
        if META_VERSION in result.schema.names
        else []
    )
    response = InferenceResponse(
        model_name=model_name,
        model_version=versions[0] if len(versions) == 1 else None,
        id=request.id,
        parameters=_extras(result),
        outputs=tensors,
    )
    head = response.model_dump_json(exclude_none=True).encode()
    return (head + b"".join(blobs), len(head)) if blobs else (head, None)


def _model_outputs(result: pa.RecordBatch) -> dict[str, pa.Array]:
    return {
        name[len(OUT_PREFIX) :]: column
        for name, column in zip(result.schema.names, result.columns)
        if name.startswith(OUT_PREFIX) and name != OUT_MODEL_SPLIT
    }


def _output(name: str, column: pa.Array) -> tuple[Tensor, bytes]:
    """An output tensor with JSON data, and the same data as binary."""
    try:
        array = codecs.column_to_ndarray(column, name=name)
    except CodecError:  # ragged or null rows: one text value per row
        array = np.array([str(v) for v in column.to_pylist()], dtype=object)
    datatype = _FROM_NUMPY.get(array.dtype.name, "BYTES")
    if datatype == "BYTES":
        flat = [v if isinstance(v, (str, bytes)) else str(v) for v in array.reshape(-1).tolist()]
        encoded = [v if isinstance(v, bytes) else v.encode() for v in flat]
        raw = b"".join(struct.pack("<I", len(v)) + v for v in encoded)
        data = [v.decode(errors="replace") if isinstance(v, bytes) else v for v in flat]
    else:
        raw = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
        data = array.reshape(-1).tolist()
    return Tensor(name=name, shape=list(array.shape), datatype=datatype, data=data), raw


def _extras(result: pa.RecordBatch) -> Parameters:
    """Every column but the model outputs and the echoed inputs, as JSON text of its rows."""
    return {
        name: json.dumps(codecs.json_values(column), separators=(",", ":"), default=str)
        for name, column in zip(result.schema.names, result.columns)
        if not name.startswith(IN_PREFIX)
        and (not name.startswith(OUT_PREFIX) or name == OUT_MODEL_SPLIT)
    }


# -- metadata -------------------------------------------------------------------------------
def model_metadata(name: str, versions: list[str], spec: PipelineSpec | None) -> ModelMetadata:
    """A pipeline as OIP describes a model: its first model's inputs and its last's outputs."""
    inputs: list[TensorSpec] = []
    outputs: list[TensorSpec] = []
    if spec is not None and spec.steps:
        inputs = spec.steps[0].models()[0].inputs
        last = spec.steps[-1]
        final = (
            last.arms[0].models[-1]
            if isinstance(last, RandomSplitStep)
            else last.champion
            if isinstance(last, ShadowStep)
            else last.model
        )
        outputs = final.outputs
    return ModelMetadata(
        name=name,
        versions=versions,
        platform="weir",
        inputs=[_describe(t) for t in inputs],
        outputs=[_describe(t) for t in outputs],
    )


def _describe(spec: TensorSpec) -> TensorMetadata:
    """OIP datatype names and -1 for dimensions of any size."""
    return TensorMetadata(
        name=spec.name,
        datatype=_FROM_NUMPY.get(spec.dtype, "BYTES"),
        shape=[d if isinstance(d, int) else -1 for d in spec.shape],
    )
