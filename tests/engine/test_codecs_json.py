"""Round-trip tables for engine.codecs' pandas-records JSON codec: types and shapes kept, strict
output, the orients it reads, and malformed payloads."""

from __future__ import annotations

import datetime
import json
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pytest

from engine.codecs import PANDAS_RECORDS, batch_from_arrays, batch_to_arrays, decode, encode
from engine.errors import CodecError


JSON_ROWS = [
    [
        {"x": [1.0, 2.0], "n": 3, "s": "a", "b": True},
        {"x": [3.5, 4.0], "n": -1, "s": "é", "b": False},
    ],
    [{"img": [[1, 2], [3, 4]]}, {"img": [[5, 6], [7, 8]]}],
    [{"a": 1, "b": None}, {"a": 2, "b": 2.5}],
    [],
]


@pytest.mark.parametrize("rows", JSON_ROWS, ids=["mixed", "nested", "null", "empty"])
def test_json_round_trip(rows: list[dict]) -> None:
    batch = decode(json.dumps(rows).encode(), PANDAS_RECORDS)
    assert batch.num_rows == len(rows)
    assert json.loads(encode(batch, PANDAS_RECORDS)) == rows


@pytest.mark.parametrize(
    "array, arrow_type",
    [
        (np.array([1, 2, 3], np.int64), pa.int64()),
        (np.array([0.5, 1.0, 2.0]), pa.float64()),
        (np.array([True, False, True]), pa.bool_()),
        (np.array(["a", "b", "c"], object), pa.string()),
        (np.arange(6.0).reshape(3, 2), pa.list_(pa.float64())),
        (np.arange(24).reshape(3, 2, 4), pa.list_(pa.list_(pa.int64()))),
    ],
    ids=["int", "float", "bool", "string", "2d", "3d"],
)
def test_json_keeps_types_and_shapes(array: np.ndarray, arrow_type: pa.DataType) -> None:
    payload = encode(batch_from_arrays({"v": array}), PANDAS_RECORDS)
    batch = decode(payload, PANDAS_RECORDS)
    assert batch.schema.field("v").type == arrow_type
    back = batch_to_arrays(batch)["v"]
    assert (back.dtype, back.shape) == (array.dtype, array.shape)
    np.testing.assert_array_equal(back, array)


def test_json_output_is_strict_and_plain() -> None:
    batch = pa.record_batch(
        {
            "f": pa.array([float("nan"), float("inf"), 1.5], pa.float32()),
            "l": pa.array([[float("-inf")], None, [2.0]]),
            "t": pa.array(
                np.array(["2024-01-02T03:04:05.5", "NaT", "2024-01-02"], "datetime64[ms]")
            ),
            "i": pa.array(np.array([1, 2, 3], np.uint8)),
            "d": pa.array([Decimal("1.25"), None, Decimal("-2")]),
            "dt": pa.array([datetime.timedelta(seconds=90), None, datetime.timedelta(0)]),
            "st": pa.array([{"p": float("nan"), "q": "z"}, None, {"p": 0.5, "q": None}]),
        }
    )
    text = encode(batch, PANDAS_RECORDS).decode()
    rows = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON {c}"))
    assert rows == [
        {
            "f": None,
            "l": [None],
            "t": "2024-01-02T03:04:05.500000",
            "i": 1,
            "d": 1.25,
            "dt": 90.0,
            "st": {"p": None, "q": "z"},
        },
        {"f": None, "l": None, "t": None, "i": 2, "d": None, "dt": None, "st": None},
        {
            "f": 1.5,
            "l": [2.0],
            "t": "2024-01-02T00:00:00",
            "i": 3,
            "d": -2.0,
            "dt": 0.0,
            "st": {"p": 0.5, "q": None},
        },
    ]


def test_json_rejects_values_it_cannot_write() -> None:
    with pytest.raises(CodecError, match=r"cannot write column 'raw' \(binary\) as JSON"):
        encode(pa.record_batch({"raw": pa.array([b"\x00"])}), PANDAS_RECORDS)


@pytest.mark.parametrize(
    "payload",
    [
        b'{"a": [1, 2], "b": ["x", "y"]}',
        b'{"a": {"0": 1, "1": 2}, "b": {"0": "x", "1": "y"}}',
        b'[{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]',
    ],
    ids=["list", "columns", "records"],
)
def test_json_orients_decode_alike(payload: bytes) -> None:
    batch = decode(payload, "application/json")
    assert batch.to_pydict() == {"a": [1, 2], "b": ["x", "y"]}


def test_json_rows_with_missing_keys_get_nulls() -> None:
    batch = decode(b'[{"a": 1}, {"b": "x"}]', PANDAS_RECORDS)
    assert batch.to_pydict() == {"a": [1, None], "b": [None, "x"]}
