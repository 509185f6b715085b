"""Round-trip tables for engine.codecs' Arrow IPC codec: streams and files, every dtype, nulls,
0/1/10k rows, empty and multi-batch streams (malformed payloads: test_codecs.py)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pytest

from engine.codecs import (
    ARROW_FILE,
    ARROW_STREAM,
    batch_from_arrays,
    decode,
    decode_many,
    encode,
    repeated,
)
from engine._arrow_ipc import DICTIONARY_MIN_ROWS
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
    "timestamp_tz": lambda n: pa.array(
        np.arange(n).astype("datetime64[ms]"), pa.timestamp("ms", tz="UTC")
    ),
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


def test_repeated_text_of_a_few_rows_is_plain_and_no_bigger_than_a_dictionary() -> None:
    version, model = "9d58c974-2fb0-491e-96ba-395d30f52d9d", "diabetes@1"
    for n in range(1, DICTIONARY_MIN_ROWS + 1):
        columns = [repeated(version, n), repeated(model, n)]
        as_dictionaries = [pa.array([v] * n).dictionary_encode() for v in (version, model)]
        ours, theirs = (
            encode(pa.RecordBatch.from_arrays(c, names=["v", "m"]), ARROW_STREAM)
            for c in (columns, as_dictionaries)
        )
        small = n < DICTIONARY_MIN_ROWS
        assert all(pa.types.is_dictionary(c.type) != small for c in columns), n
        if small:
            assert len(ours) <= len(theirs), n
        assert decode(ours, ARROW_STREAM).column("v").to_pylist() == [version] * n


def test_a_column_name_that_is_not_utf8_is_a_codec_error_alone_and_among_others() -> None:
    good = encode(pa.RecordBatch.from_pydict({"abcdefgh": [1, 2]}), ARROW_STREAM)
    bad = good.replace(b"abcdefgh", b"abcdefg\xb5")  # found by tests/engine/test_codecs_fuzz.py
    with pytest.raises(CodecError, match="utf-8"):
        decode(bad, ARROW_STREAM)
    refused, decoded = decode_many([bad, good])
    assert isinstance(refused, CodecError) and decoded.rows == [2]
