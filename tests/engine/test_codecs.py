"""Round-trip tables for engine.codecs: Arrow, JSON, numpy and pandas conversions."""

from __future__ import annotations

import datetime
import json
import math
from collections.abc import Callable
from decimal import Decimal

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from engine.codecs import (
    ARROW_FILE,
    ARROW_STREAM,
    PANDAS_RECORDS,
    TENSOR_COLUMN,
    ContentType,
    batch_from_arrays,
    batch_from_pandas,
    batch_to_arrays,
    batch_to_pandas,
    column_to_ndarray,
    column_values,
    decode,
    decode_many,
    encode,
    ndarray_to_column,
    normalize_content_type,
    repeated,
    to_record_batch,
)
from engine.errors import CodecError

ARROW_TYPES = [ARROW_STREAM, ARROW_FILE]

COLUMNS: dict[str, Callable[[int], pa.Array]] = {
    "float32": lambda n: pa.array(np.arange(n, dtype=np.float32) / 3),
    "float64": lambda n: pa.array(np.arange(n, dtype=np.float64) / 7),
    "int32": lambda n: pa.array(np.arange(n, dtype=np.int32) - 5),
    "int64": lambda n: pa.array(np.arange(n, dtype=np.int64) * 2**40),
    "bool": lambda n: pa.array(np.arange(n) % 3 == 0),
    "string": lambda n: pa.array([f"row-{i}-é" for i in range(n)]),
    "timestamp": lambda n: pa.array(np.arange(n).astype("datetime64[us]")),
    "timestamp_tz": lambda n: pa.array(np.arange(n).astype("datetime64[ms]"),
                                       pa.timestamp("ms", tz="UTC")),
}


def _with_nulls(column: pa.Array) -> pa.Array:
    """The same column with every third value null."""
    mask = np.arange(len(column)) % 3 == 1
    return pa.array(column.to_pylist(), type=column.type, mask=mask)


@pytest.mark.parametrize("content_type", ARROW_TYPES)
@pytest.mark.parametrize("dtype", list(COLUMNS))
@pytest.mark.parametrize("rows", [0, 1, 10_000])
@pytest.mark.parametrize("nulls", [False, True], ids=["dense", "nulls"])
def test_arrow_round_trip(content_type: str, dtype: str, rows: int, nulls: bool) -> None:
    column = COLUMNS[dtype](rows)
    if nulls:
        column = _with_nulls(column)
    batch = pa.RecordBatch.from_arrays([column, pa.array(np.arange(rows))], names=["v", "id"])
    decoded = decode(encode(batch, content_type), content_type)
    assert decoded.schema == batch.schema
    assert decoded.num_rows == rows
    assert decoded.column(0).null_count == batch.column(0).null_count
    assert decoded.equals(batch)


@pytest.mark.parametrize("content_type", ARROW_TYPES)
def test_codec_idempotent(content_type: str) -> None:
    batch = batch_from_arrays({"x": np.random.default_rng(0).random((64, 3)), "k": np.arange(64)})
    payload = encode(batch, content_type)
    assert encode(decode(payload, content_type), content_type) == payload


def test_arrow_stream_is_one_batch_and_several_are_joined() -> None:
    parts = [pa.record_batch({"a": [1, 2]}), pa.record_batch({"a": [3]})]
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, parts[0].schema) as writer:
        for part in parts:
            writer.write_batch(part)
    decoded = decode(sink.getvalue().to_pybytes(), ARROW_STREAM)
    assert isinstance(decoded, pa.RecordBatch)
    assert decoded.column(0).to_pylist() == [1, 2, 3]


@pytest.mark.parametrize("content_type", ARROW_TYPES)
def test_arrow_without_batches_gives_empty_batch_with_schema(content_type: str) -> None:
    schema = pa.schema([("x", pa.float32()), ("s", pa.string())])
    sink = pa.BufferOutputStream()
    new_writer = pa.ipc.new_stream if content_type == ARROW_STREAM else pa.ipc.new_file
    with new_writer(sink, schema):
        pass
    decoded = decode(sink.getvalue().to_pybytes(), content_type)
    assert decoded.num_rows == 0
    assert decoded.schema == schema


SHAPES = [(3,), (2, 4), (1, 2, 2)]
ND_DTYPES = [np.float32, np.float64, np.int32, np.int64, np.bool_, np.uint8]


@pytest.mark.parametrize("inner", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", ND_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("rows", [0, 1, 7])
def test_ndarray_round_trip_keeps_dtype_and_shape(
    inner: tuple[int, ...], dtype: type, rows: int
) -> None:
    array = (np.arange(rows * math.prod(inner)) % 5).astype(dtype).reshape((rows, *inner))
    column = ndarray_to_column(array)
    assert len(column) == rows
    assert pa.types.is_fixed_size_list(column.type)
    back = column_to_ndarray(column)
    assert back.dtype == array.dtype
    assert back.shape == array.shape
    np.testing.assert_array_equal(back, array)


@pytest.mark.parametrize("array", [
    np.array([1.5, 2.5], dtype=np.float32),
    np.array([1, 2, 3], dtype=np.int64),
    np.array([True, False]),
    np.array(["a", "bc"], dtype=object),
    np.arange(3).astype("datetime64[us]"),
    np.zeros((4, 0), dtype=np.float32),
], ids=["float32", "int64", "bool", "string", "timestamp", "empty-inner"])
def test_ndarray_round_trip_plain_columns(array: np.ndarray) -> None:
    back = column_to_ndarray(ndarray_to_column(array))
    assert (back.dtype, back.shape) == (array.dtype, array.shape)
    np.testing.assert_array_equal(back, array)


def test_ndarray_to_column_is_zero_copy_for_contiguous_numbers() -> None:
    array = np.random.default_rng(1).random((5, 2, 4))
    column = ndarray_to_column(array)
    assert column.flatten().flatten().buffers()[1].address == array.ctypes.data


def test_nd_columns_survive_arrow_stream() -> None:
    arrays = {"img": np.ones((6, 2, 4), np.float32), "vec": np.zeros((6, 3), np.int32),
              "id": np.arange(6)}
    back = batch_to_arrays(decode(encode(batch_from_arrays(arrays), ARROW_STREAM), ARROW_STREAM))
    for name, array in arrays.items():
        assert (back[name].dtype, back[name].shape) == (array.dtype, array.shape)
        np.testing.assert_array_equal(back[name], array)


@pytest.mark.parametrize("column", [
    pa.array([[1.0, 2.0], [3.0, 4.0]], pa.list_(pa.float64())),
    pa.array([[1.0, 2.0], [3.0, 4.0]], pa.large_list(pa.float64())),
    pa.array([[1.0, 2.0], [3.0, 4.0]], pa.list_(pa.float64(), 2)),
    pa.chunked_array([[[1.0, 2.0]], [[3.0, 4.0]]]),
], ids=["list", "large_list", "fixed_size_list", "chunked"])
def test_variable_and_fixed_lists_give_the_same_array(column: pa.Array) -> None:
    back = column_to_ndarray(column)
    np.testing.assert_array_equal(back, np.array([[1.0, 2.0], [3.0, 4.0]]))


def test_sliced_list_column_uses_only_its_rows() -> None:
    column = pa.array([[1, 2, 3], [4, 5], [6, 7]]).slice(1)
    np.testing.assert_array_equal(column_to_ndarray(column), [[4, 5], [6, 7]])


@pytest.mark.parametrize("values, lengths", [
    ([[1, 2, 3], [1, 2, 3, 4]], "lengths 3 and 4"),
    ([[[1, 2]], [[1, 2], [3, 4]]], "lengths 1 and 2"),
    ([[], [1]], "lengths 0 and 1"),
], ids=["depth1", "depth1-nested", "empty-row"])
def test_ragged_lists_raise_as_one_tensor(values: list, lengths: str) -> None:
    with pytest.raises(CodecError, match=rf"the codec refused column 'x': rows of column 'x' "
                                         rf"have {lengths}; every row must"):
        column_to_ndarray(pa.array(values), name="x")


@pytest.mark.parametrize("values, shapes", [
    ([[1, 2, 3], [4]], [(3,), (1,)]),
    ([[], [1, 2]], [(0,), (2,)]),
    ([[[1, 2]], [[3, 4], [5, 6]]], [(1, 2), (2, 2)]),
], ids=["depth1", "empty-row", "rows-of-vectors"])
def test_ragged_lists_come_as_one_array_per_row(values: list, shapes: list) -> None:
    rows = column_values(pa.array(values), name="x")
    assert isinstance(rows, list)
    assert [row.shape for row in rows] == shapes
    for row, expected in zip(rows, values):
        np.testing.assert_array_equal(row, np.array(expected).reshape(row.shape))


def test_ragged_rows_of_a_sliced_column_and_a_uniform_column_as_one_array() -> None:
    rows = column_values(pa.array([[9], [1, 2, 3], [4]], pa.list_(pa.uint8())).slice(1))
    assert [row.tolist() for row in rows] == [[1, 2, 3], [4]]
    assert all(row.dtype == np.uint8 for row in rows)
    uniform = column_values(pa.array([[1, 2], [3, 4]]))
    assert isinstance(uniform, np.ndarray) and uniform.shape == (2, 2)


def test_rows_ragged_within_a_row_raise() -> None:
    with pytest.raises(CodecError, match="the codec refused column 'x': its rows hold lists of "
                                         "lengths 1 and 2 below the first level"):
        column_values(pa.array([[[1, 2], [3, 4]], [[1, 2], [3]]]), name="x")


@pytest.mark.parametrize("rows, kind", [
    ([np.arange(3, dtype=np.uint8), np.arange(1, dtype=np.uint8)], pa.list_(pa.uint8())),
    ([np.zeros((2, 3), np.float32), np.ones((1, 3), np.float32)],
     pa.list_(pa.list_(pa.float32(), 3))),
    ([np.zeros(0, np.int64), np.arange(2)], pa.list_(pa.int64())),
], ids=["bytes", "rows-of-vectors", "empty-row"])
def test_one_array_per_row_round_trips_through_arrow(rows: list, kind: pa.DataType) -> None:
    batch = batch_from_arrays({"v": rows})
    assert batch.schema.field("v").type == kind
    back = batch_to_arrays(decode(encode(batch, ARROW_STREAM), ARROW_STREAM), ragged=True)["v"]
    if isinstance(back, np.ndarray):  # rows of one shape come back as one array
        back = list(back)
    assert len(back) == len(rows)
    for got, want in zip(back, rows):
        np.testing.assert_array_equal(got, want)


def test_one_array_per_row_must_share_dtype_and_trailing_shape() -> None:
    with pytest.raises(CodecError, match="column 'v' is one array per row, but they differ"):
        batch_from_arrays({"v": [np.zeros((2, 3)), np.zeros((2, 4))]})


def test_ragged_json_rows_raise_when_made_arrays() -> None:
    batch = decode(b'[{"x": [1, 2]}, {"x": [1, 2, 3]}]', PANDAS_RECORDS)
    with pytest.raises(CodecError, match="rows of column 'x' have lengths 2 and 3"):
        batch_to_arrays(batch)
    assert [row.tolist() for row in batch_to_arrays(batch, ragged=True)["x"]] == [[1, 2], [1, 2, 3]]


@pytest.mark.parametrize("column, what", [
    (pa.array([1.0, None]), "null values"),
    (pa.array([1, None], pa.int32()), "null values"),
    (pa.array([True, None]), "null values"),
    (pa.array([[1.0], None]), "null rows"),
    (pa.array([[1.0, None]]), "null values"),
    (pa.array([[[1]], [None]]), "null rows"),
])
def test_nulls_in_numeric_data_raise(column: pa.Array, what: str) -> None:
    with pytest.raises(CodecError, match=f"column 'score' has {what}"):
        column_to_ndarray(column, name="score")


def test_string_nulls_stay_none() -> None:
    assert column_to_ndarray(pa.array(["a", None])).tolist() == ["a", None]


JSON_ROWS = [
    [{"x": [1.0, 2.0], "n": 3, "s": "a", "b": True},
     {"x": [3.5, 4.0], "n": -1, "s": "é", "b": False}],
    [{"img": [[1, 2], [3, 4]]}, {"img": [[5, 6], [7, 8]]}],
    [{"a": 1, "b": None}, {"a": 2, "b": 2.5}],
    [],
]


@pytest.mark.parametrize("rows", JSON_ROWS, ids=["mixed", "nested", "null", "empty"])
def test_json_round_trip(rows: list[dict]) -> None:
    batch = decode(json.dumps(rows).encode(), PANDAS_RECORDS)
    assert batch.num_rows == len(rows)
    assert json.loads(encode(batch, PANDAS_RECORDS)) == rows


@pytest.mark.parametrize("array, arrow_type", [
    (np.array([1, 2, 3], np.int64), pa.int64()),
    (np.array([0.5, 1.0, 2.0]), pa.float64()),
    (np.array([True, False, True]), pa.bool_()),
    (np.array(["a", "b", "c"], object), pa.string()),
    (np.arange(6.0).reshape(3, 2), pa.list_(pa.float64())),
    (np.arange(24).reshape(3, 2, 4), pa.list_(pa.list_(pa.int64()))),
], ids=["int", "float", "bool", "string", "2d", "3d"])
def test_json_keeps_types_and_shapes(array: np.ndarray, arrow_type: pa.DataType) -> None:
    payload = encode(batch_from_arrays({"v": array}), PANDAS_RECORDS)
    batch = decode(payload, PANDAS_RECORDS)
    assert batch.schema.field("v").type == arrow_type
    back = batch_to_arrays(batch)["v"]
    assert (back.dtype, back.shape) == (array.dtype, array.shape)
    np.testing.assert_array_equal(back, array)


def test_json_output_is_strict_and_plain() -> None:
    batch = pa.record_batch({
        "f": pa.array([float("nan"), float("inf"), 1.5], pa.float32()),
        "l": pa.array([[float("-inf")], None, [2.0]]),
        "t": pa.array(np.array(["2024-01-02T03:04:05.5", "NaT", "2024-01-02"], "datetime64[ms]")),
        "i": pa.array(np.array([1, 2, 3], np.uint8)),
        "d": pa.array([Decimal("1.25"), None, Decimal("-2")]),
        "dt": pa.array([datetime.timedelta(seconds=90), None, datetime.timedelta(0)]),
        "st": pa.array([{"p": float("nan"), "q": "z"}, None, {"p": 0.5, "q": None}]),
    })
    text = encode(batch, PANDAS_RECORDS).decode()
    rows = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON {c}"))
    assert rows == [
        {"f": None, "l": [None], "t": "2024-01-02T03:04:05.500000", "i": 1, "d": 1.25,
         "dt": 90.0, "st": {"p": None, "q": "z"}},
        {"f": None, "l": None, "t": None, "i": 2, "d": None, "dt": None, "st": None},
        {"f": 1.5, "l": [2.0], "t": "2024-01-02T00:00:00", "i": 3, "d": -2.0, "dt": 0.0,
         "st": {"p": 0.5, "q": None}},
    ]


def test_json_rejects_values_it_cannot_write() -> None:
    with pytest.raises(CodecError, match=r"cannot write column 'raw' \(binary\) as JSON"):
        encode(pa.record_batch({"raw": pa.array([b"\x00"])}), PANDAS_RECORDS)


@pytest.mark.parametrize("payload", [
    b'{"a": [1, 2], "b": ["x", "y"]}',
    b'{"a": {"0": 1, "1": 2}, "b": {"0": "x", "1": "y"}}',
    b'[{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]',
], ids=["list", "columns", "records"])
def test_json_orients_decode_alike(payload: bytes) -> None:
    batch = decode(payload, "application/json")
    assert batch.to_pydict() == {"a": [1, 2], "b": ["x", "y"]}


def test_json_rows_with_missing_keys_get_nulls() -> None:
    batch = decode(b'[{"a": 1}, {"b": "x"}]', PANDAS_RECORDS)
    assert batch.to_pydict() == {"a": [1, None], "b": [None, "x"]}


def _arrow_bytes(content_type: str) -> bytes:
    return encode(batch_from_arrays({"x": np.arange(100.0)}), content_type)


MALFORMED: list[tuple[bytes, str, str]] = [
    (np.random.default_rng(7).bytes(200), ARROW_STREAM, "malformed payload"),
    (np.random.default_rng(7).bytes(200), ARROW_FILE, "malformed payload"),
    (_arrow_bytes(ARROW_STREAM)[:600], ARROW_STREAM, "expected an Arrow IPC stream"),
    (_arrow_bytes(ARROW_FILE)[:600], ARROW_FILE, "expected an Arrow IPC file"),
    (_arrow_bytes(ARROW_FILE), ARROW_STREAM, "looks like an Arrow IPC file"),
    (b"", ARROW_STREAM, "empty payload: expected an Arrow IPC stream"),
    (b"", ARROW_FILE, "empty payload: expected an Arrow IPC file"),
    (b"", PANDAS_RECORDS, "empty payload: expected a JSON list of row objects"),
    (b"{", PANDAS_RECORDS, "not valid JSON"),
    (b"\xff\xfe\x00", PANDAS_RECORDS, "not valid JSON"),
    (b"[" * 100_000, PANDAS_RECORDS, "not valid JSON"),
    (b"42", PANDAS_RECORDS, 'row objects, e.g. [{"x": [1.0, 2.0]}], got a number'),
    (b'"x"', PANDAS_RECORDS, "got a string"),
    (b"[1,2]", PANDAS_RECORDS, "but row 0 is a number"),
    (b'[{"a": 1}, [1]]', PANDAS_RECORDS, "but row 1 is a list"),
    (b'[{"a": 1}, {"a": "x"}]', PANDAS_RECORDS, "column 'a' has inconsistent types"),
    (b'[{"a": 99999999999999999999999}]', PANDAS_RECORDS, "column 'a'"),
    (b'{"a": 1}', PANDAS_RECORDS, "column 'a' is a number: expected a list of values"),
    (b'{"a": [1], "b": [1, 2]}', PANDAS_RECORDS, "different lengths"),
]


@pytest.mark.parametrize("payload, content_type, message", MALFORMED,
                         ids=[f"{i}-{m[:20]}" for i, (_, _, m) in enumerate(MALFORMED)])
def test_malformed_payloads_raise_codec_error(
    payload: bytes, content_type: str, message: str
) -> None:
    with pytest.raises(CodecError) as info:
        decode(payload, content_type)
    assert message in str(info.value)


@pytest.mark.parametrize("content_type", ARROW_TYPES)
def test_every_truncation_or_corruption_is_a_codec_error_or_a_batch(content_type: str) -> None:
    payload = _arrow_bytes(content_type)
    rng = np.random.default_rng(3)
    corrupted = [payload[:cut] for cut in range(0, len(payload), 7)]
    for _ in range(300):
        flipped = bytearray(payload)
        flipped[rng.integers(len(flipped))] = rng.integers(256)
        corrupted.append(bytes(flipped))
    failures = 0
    for candidate in corrupted:
        try:
            assert isinstance(decode(candidate, content_type), pa.RecordBatch)
        except CodecError:
            failures += 1
    assert failures > len(payload) // 7 - 3


@pytest.mark.parametrize("header, default, expected", [
    (ARROW_STREAM, ARROW_STREAM, ARROW_STREAM),
    ("Application/Vnd.Apache.Arrow.Stream", ARROW_FILE, ARROW_STREAM),
    (b"application/vnd.apache.arrow.file", ARROW_STREAM, ARROW_FILE),
    ("application/json", ARROW_STREAM, PANDAS_RECORDS),
    (" application/json ; charset=utf-8 ", ARROW_STREAM, PANDAS_RECORDS),
    ("application/json;format=pandas-records", ARROW_STREAM, PANDAS_RECORDS),
    ('application/json; charset=utf-8; FORMAT="Pandas-Records"', ARROW_STREAM, PANDAS_RECORDS),
    ("APPLICATION/JSON; FORMAT=RECORDS", ARROW_STREAM, PANDAS_RECORDS),
    (None, ARROW_STREAM, ARROW_STREAM),
    ("", PANDAS_RECORDS, PANDAS_RECORDS),
    (b"  ", ARROW_FILE, ARROW_FILE),
])
def test_normalize_content_type(
    header: str | bytes | None, default: ContentType, expected: str
) -> None:
    assert normalize_content_type(header, default) == expected


@pytest.mark.parametrize("header", [
    "text/csv", "application/octet-stream", "application/json; format=split", "arrow",
])
def test_unknown_content_type_lists_accepted_ones(header: str) -> None:
    with pytest.raises(CodecError, match="application/vnd.apache.arrow.stream") as info:
        normalize_content_type(header)
    assert header in str(info.value)
    assert PANDAS_RECORDS in str(info.value)


def test_decode_and_encode_reject_unknown_content_type() -> None:
    with pytest.raises(CodecError, match="unsupported content type 'text/csv'"):
        decode(b"a,b", "text/csv")
    with pytest.raises(CodecError, match="unsupported content type 'text/csv'"):
        encode(pa.record_batch({"a": [1]}), "text/csv")


def test_pandas_round_trip_with_list_column() -> None:
    df = pd.DataFrame({
        "x": [np.array([1.0, 2.0]), np.array([3.0, 4.0]), np.array([5.0, 6.0])],
        "tags": [["a"], [], ["b", "c"]],
        "n": [1, 2, 3],
        "name": ["p", "q", "r"],
    }, index=[10, 11, 12])
    batch = decode(encode(batch_from_pandas(df), ARROW_STREAM), ARROW_STREAM)
    assert batch.schema.names == ["x", "tags", "n", "name"]
    assert pa.types.is_list(batch.schema.field("x").type)
    back = batch_to_pandas(batch)
    assert list(back.index) == [0, 1, 2]
    assert [list(cell) for cell in back["x"]] == [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]
    assert [list(cell) for cell in back["tags"]] == [["a"], [], ["b", "c"]]
    assert back["n"].tolist() == [1, 2, 3] and back["n"].dtype == np.int64
    assert back["name"].tolist() == ["p", "q", "r"]
    np.testing.assert_array_equal(column_to_ndarray(batch.column(0)), np.stack(df["x"].to_numpy()))


def test_pandas_mixed_column_raises() -> None:
    with pytest.raises(CodecError, match="cannot convert DataFrame"):
        batch_from_pandas(pd.DataFrame({"a": [1, "x"]}))


EXPECTED = pa.record_batch({"a": [1, 2], "b": ["x", "y"]})


@pytest.mark.parametrize("data", [
    EXPECTED,
    pa.Table.from_batches([EXPECTED.slice(0, 1), EXPECTED.slice(1)]),
    pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}),
    [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}],
    {"a": [1, 2], "b": ["x", "y"]},
    {"a": np.array([1, 2]), "b": ["x", "y"]},
], ids=["batch", "table", "dataframe", "rows", "columns", "arrays"])
def test_to_record_batch(data: object) -> None:
    batch = to_record_batch(data)
    assert isinstance(batch, pa.RecordBatch)
    assert batch.to_pydict() == EXPECTED.to_pydict()


@pytest.mark.parametrize("data", [42, "a", None, (1, 2)])
def test_to_record_batch_names_accepted_kinds(data: object) -> None:
    with pytest.raises(CodecError, match="pass a pyarrow RecordBatch or Table, a pandas DataFrame"):
        to_record_batch(data)


def test_a_numpy_array_is_one_tensor_column_with_rows_first() -> None:
    x = np.arange(6, dtype=np.float32).reshape(3, 2)
    batch = to_record_batch(x)
    assert batch.schema.names == [TENSOR_COLUMN]
    assert column_to_ndarray(batch.column(0)).tolist() == x.tolist()
    with pytest.raises(CodecError, match="needs a first axis of rows"):
        to_record_batch(np.array(1.0))


def test_to_record_batch_rejects_rows_that_are_not_dicts() -> None:
    with pytest.raises(CodecError, match="row 1 is a number"):
        to_record_batch([{"a": 1}, 2])


@pytest.mark.parametrize("arrays, message", [
    ({"a": np.zeros(3), "b": np.zeros(4)}, "different lengths"),
    ({"a": np.zeros((3, 2)), "b": np.zeros((2, 3))}, "different lengths"),
    ({"a": np.float64(1.0)}, "at least one dimension"),
    ({"a": np.array(1.0)}, "at least one dimension"),
])
def test_batch_from_arrays_rejects_bad_shapes(arrays: dict, message: str) -> None:
    with pytest.raises(CodecError, match=message):
        batch_from_arrays(arrays)


def test_repeated_text_is_small_on_the_wire_and_plain_when_decoded() -> None:
    n = 256
    version = "9d58c974-2fb0-491e-96ba-395d30f52d9d"
    compact = pa.RecordBatch.from_arrays([repeated(version, n)], names=["v"])
    plain = pa.RecordBatch.from_arrays([pa.array([version] * n)], names=["v"])
    encoded = encode(compact, ARROW_STREAM)
    assert len(encoded) < len(encode(plain, ARROW_STREAM)) / 4
    decoded = decode(encoded, ARROW_STREAM)
    assert decoded.schema.field("v").type == pa.string()
    assert decoded.column("v").to_pylist() == [version] * n


def test_a_column_name_that_is_not_utf8_is_a_codec_error_alone_and_among_others() -> None:
    good = encode(pa.RecordBatch.from_pydict({"abcdefgh": [1, 2]}), ARROW_STREAM)
    bad = good.replace(b"abcdefgh", b"abcdefg\xb5")  # found by tests/engine/test_codecs_fuzz.py
    with pytest.raises(CodecError, match="utf-8"):
        decode(bad, ARROW_STREAM)
    refused, decoded = decode_many([bad, good])
    assert isinstance(refused, CodecError) and decoded.rows == [2]
