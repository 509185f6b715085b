"""Tables for engine.codecs' public face: content types, malformed payloads of each, pandas
DataFrames, what `to_record_batch` accepts (codecs: test_codecs_arrow, _json and _columns)."""

from __future__ import annotations


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
    batch_to_pandas,
    column_to_ndarray,
    decode,
    encode,
    normalize_content_type,
    to_record_batch,
)
from engine.errors import CodecError


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


@pytest.mark.parametrize(
    "payload, content_type, message",
    MALFORMED,
    ids=[f"{i}-{m[:20]}" for i, (_, _, m) in enumerate(MALFORMED)],
)
def test_malformed_payloads_raise_codec_error(
    payload: bytes, content_type: str, message: str
) -> None:
    with pytest.raises(CodecError) as info:
        decode(payload, content_type)
    assert message in str(info.value)


@pytest.mark.parametrize("content_type", [ARROW_STREAM, ARROW_FILE])
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


@pytest.mark.parametrize(
    "header, default, expected",
    [
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
    ],
)
def test_normalize_content_type(
    header: str | bytes | None, default: ContentType, expected: str
) -> None:
    assert normalize_content_type(header, default) == expected


@pytest.mark.parametrize(
    "header",
    [
        "text/csv",
        "application/octet-stream",
        "application/json; format=split",
        "arrow",
    ],
)
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
    df = pd.DataFrame(
        {
            "x": [np.array([1.0, 2.0]), np.array([3.0, 4.0]), np.array([5.0, 6.0])],
            "tags": [["a"], [], ["b", "c"]],
            "n": [1, 2, 3],
            "name": ["p", "q", "r"],
        },
        index=[10, 11, 12],
    )
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


@pytest.mark.parametrize(
    "data",
    [
        EXPECTED,
        pa.Table.from_batches([EXPECTED.slice(0, 1), EXPECTED.slice(1)]),
        pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}),
        [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}],
        {"a": [1, 2], "b": ["x", "y"]},
        {"a": np.array([1, 2]), "b": ["x", "y"]},
    ],
    ids=["batch", "table", "dataframe", "rows", "columns", "arrays"],
)
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
