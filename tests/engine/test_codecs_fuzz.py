"""engine.codecs and engine.oip under generated input (hypothesis, seeded, bounded).

Arrow IPC streams and files (nested and dictionary columns, empty batches) round-trip;
the same payloads with bytes changed, cut short or given huge declared lengths,
random bytes under every content type, generated JSON and OIP v2 bodies each
decode or raise CodecError: no other exception (which would crash a worker or be
a 500) and no hang (the timeout marks bound each test).
"""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from engine import codecs
from engine.codecs import (
    ARROW_FILE,
    ARROW_STREAM,
    PANDAS_RECORDS,
    DecodedRun,
    decode,
    decode_many,
    encode,
    normalize_content_type,
)
from engine.errors import CodecError
from engine.oip import InferenceRequest, request_to_batch

pytestmark = pytest.mark.timeout(120)

SEEDED = settings(
    max_examples=150,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.generate],
)
CONTENT_TYPES = [
    ARROW_STREAM,
    ARROW_FILE,
    PANDAS_RECORDS,
    "application/json",
    "text/plain",
    "",
    "application/json; format=split",
    'APPLICATION/JSON ; FORMAT="records"',
    "application/vnd.apache.arrow.stream; charset=utf-8",
    "\x00\xff",
]


# --- generated batches -----------------------------------------------------------------------


def _column(kind: str, rows: int, draw: Any) -> pa.Array:
    values = draw(
        st.lists(st.floats(allow_nan=False, width=32), min_size=rows * 3, max_size=rows * 3)
    )
    flat = np.array(values, dtype=np.float32)
    if kind == "float":
        return pa.array(flat[:rows])
    if kind == "int":
        return pa.array(np.arange(rows, dtype=np.int64) * draw(st.integers(-(2**40), 2**40)))
    if kind == "fixed list":
        return codecs.ndarray_to_column(flat.reshape(rows, 3))
    if kind == "nested list":
        return pa.array(
            [
                [[float(v)] for v in flat[i * 3 : i * 3 + draw(st.integers(0, 3))]]
                for i in range(rows)
            ]
        )
    if kind == "dictionary":
        return pa.array(
            [draw(st.sampled_from(["a", "bb", "é"])) for _ in range(rows)]
        ).dictionary_encode()
    if kind == "text":
        return pa.array([draw(st.text(max_size=4)) for _ in range(rows)])
    return pa.array([draw(st.none() | st.booleans()) for _ in range(rows)], pa.bool_())


@st.composite
def batches(draw: Any) -> pa.RecordBatch:
    rows = draw(st.sampled_from([0, 1, 2, 5]))
    kinds = draw(
        st.lists(
            st.sampled_from(
                ["float", "int", "fixed list", "nested list", "dictionary", "text", "bool"]
            ),
            min_size=1,
            max_size=4,
        )
    )
    return pa.RecordBatch.from_arrays(
        [_column(kind, rows, draw) for kind in kinds],
        names=[f"c{i}.{kind}" for i, kind in enumerate(kinds)],
    )


@given(batch=batches(), content_type=st.sampled_from([ARROW_STREAM, ARROW_FILE]))
@SEEDED
def test_arrow_payloads_round_trip(batch: pa.RecordBatch, content_type: str) -> None:
    decoded = decode(encode(batch, content_type), content_type)
    assert decoded.equals(codecs.without_dictionaries(batch))


# --- hostile bytes ---------------------------------------------------------------------------


def _outcome(payload: bytes, content_type: str) -> pa.RecordBatch | None:
    """The batch, or None for a CodecError; any other exception fails the test."""
    try:
        batch = decode(payload, content_type)
    except CodecError as exc:
        assert str(exc)
        return None
    assert isinstance(batch, pa.RecordBatch)
    return batch


@st.composite
def damaged(draw: Any) -> tuple[bytes, str]:
    """A real payload with bytes changed, a huge length written in, or cut short."""
    content_type = draw(st.sampled_from([ARROW_STREAM, ARROW_FILE]))
    data = bytearray(encode(draw(batches()), content_type))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data) - 1))
        how = draw(st.sampled_from(["byte", "huge int32", "huge int64", "cut"]))
        if how == "byte":
            data[at] = draw(st.integers(0, 255))
        elif how == "huge int32" and at + 4 <= len(data):
            struct.pack_into("<i", data, at, draw(st.sampled_from([2**31 - 1, -2, 2**30])))
        elif how == "huge int64" and at + 8 <= len(data):
            struct.pack_into("<q", data, at, draw(st.sampled_from([2**62, 2**40, -1])))
        elif how == "cut":
            del data[at:]
            break
    return bytes(data), content_type


@given(case=damaged())
@SEEDED
def test_damaged_arrow_payloads_decode_or_raise_codec_error(case: tuple[bytes, str]) -> None:
    _outcome(*case)


@given(payload=st.binary(max_size=400), content_type=st.sampled_from(CONTENT_TYPES))
@SEEDED
def test_random_bytes_under_any_content_type_decode_or_raise_codec_error(
    payload: bytes, content_type: str
) -> None:
    _outcome(payload, content_type)


@given(header=st.text(max_size=60) | st.sampled_from(CONTENT_TYPES))
@SEEDED
def test_content_types_are_one_of_ours_or_refused_naming_the_accepted_ones(header: str) -> None:
    try:
        found = normalize_content_type(header)
    except CodecError as exc:
        assert ARROW_STREAM in str(exc) and PANDAS_RECORDS in str(exc)
        return
    assert found in (ARROW_STREAM, ARROW_FILE, PANDAS_RECORDS)


@given(
    payloads=st.lists(
        damaged() | batches().map(lambda b: (encode(b, ARROW_STREAM), "")), min_size=1, max_size=6
    )
)
@SEEDED
def test_decode_many_accounts_for_every_payload_and_agrees_with_decode(
    payloads: list[tuple[bytes, str]],
) -> None:
    values = [payload for payload, _ in payloads]
    out = decode_many(values)
    assert sum(len(item.rows) if isinstance(item, DecodedRun) else 1 for item in out) == len(values)
    alone = [_outcome(value, ARROW_STREAM) for value in values]
    position = 0
    for item in out:
        if isinstance(item, CodecError):
            assert alone[position] is None
            position += 1
            continue
        for rows in item.rows:
            assert alone[position] is not None and alone[position].num_rows == rows
            position += 1


# --- JSON and OIP bodies ---------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=12,
)
ROWS = st.lists(
    st.dictionaries(st.sampled_from(["x", "y", "z"]), JSON_VALUES, max_size=3), max_size=4
)


@given(value=JSON_VALUES | ROWS)
@SEEDED
def test_generated_json_decodes_or_raises_codec_error(value: Any) -> None:
    _outcome(json.dumps(value).encode(), PANDAS_RECORDS)


TENSORS = st.fixed_dictionaries(
    {
        "name": st.text(max_size=4),
        "shape": st.lists(st.integers(-2, 3) | st.sampled_from([2**40, 2**62]), max_size=3),
        "datatype": st.sampled_from(["FP32", "FP16", "INT8", "UINT64", "BOOL", "BYTES", "FP128"]),
        "data": st.lists(JSON_VALUES, max_size=6),
    }
)


@given(inputs=st.lists(TENSORS, max_size=3))
@SEEDED
def test_generated_oip_bodies_decode_or_raise_codec_error(inputs: list[dict[str, Any]]) -> None:
    try:
        request = InferenceRequest.model_validate({"inputs": inputs})
    except ValidationError:
        return  # the route answers these 422 before any decoding
    try:
        batch = request_to_batch(request)
    except CodecError as exc:
        assert str(exc)
        return
    assert batch.num_rows == request.inputs[0].shape[0]


@given(
    rows=st.integers(0, 4),
    width=st.integers(1, 3),
    datatype=st.sampled_from(["FP32", "FP64", "INT8", "INT64", "BOOL"]),
    data=st.data(),
)
@SEEDED
def test_well_formed_oip_tensors_keep_their_values(
    rows: int, width: int, datatype: str, data: Any
) -> None:
    element = st.booleans() if datatype == "BOOL" else st.integers(-100, 100)
    flat = data.draw(st.lists(element, min_size=rows * width, max_size=rows * width))
    request = InferenceRequest(
        inputs=[{"name": "t", "shape": [rows, width], "datatype": datatype, "data": flat}]
    )
    column = codecs.column_to_ndarray(request_to_batch(request).column("t"))
    assert column.shape == (rows, width) and column.reshape(-1).tolist() == flat
