"""engine.codecs.decode_many and encode_many, and the stream framing they read
(engine/_arrow_frames.py): many one-batch Arrow streams read and written in one pass,
each the same as alone."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from engine import _arrow_frames as frames
from engine.codecs import (
    ARROW_STREAM,
    DecodedRun,
    decode,
    decode_many,
    encode,
    encode_many,
    without_dictionaries,
)
from engine.errors import CodecError


def result(n: int, version: str = "v1", offset: int = 0) -> pa.RecordBatch:
    """A batch shaped like a step's results: numbers, a tensor column and dictionary columns."""
    x = np.arange(offset, offset + n, dtype=np.float32)
    return pa.RecordBatch.from_arrays(
        [
            pa.array(x),
            pa.FixedSizeListArray.from_arrays(pa.array(np.repeat(x, 2)), 2),
            dictionary(version, n),
            dictionary("model@1", n),
            pa.array([f"s{i}" for i in range(n)]),
        ],
        names=["y", "tensor", "metadata.pipeline_version", "metadata.model", "s"],
    )


def dictionary(value: str, n: int) -> pa.DictionaryArray:
    """`value` `n` times, dictionary-encoded whatever `n` (as `repeated` does from
    DICTIONARY_MIN_ROWS rows)."""
    return pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int8)), pa.array([value]))


def runs(decoded: list[DecodedRun | CodecError]) -> list[object]:
    """Each item as its rows per payload, or the error type."""
    return [type(item).__name__ if isinstance(item, CodecError) else item.rows for item in decoded]


# -- encode_many ---------------------------------------------------------------------
@pytest.mark.parametrize("rows", [[1], [1, 1, 1], [2, 0, 3], [5]])
def test_each_piece_is_the_bytes_encode_writes_for_it_alone(rows: list[int]) -> None:
    batch = result(sum(rows))
    offsets = np.cumsum([0, *rows])
    alone = [encode(batch.slice(int(start), n), ARROW_STREAM) for start, n in zip(offsets, rows)]
    pieces = encode_many(batch, rows)
    assert pieces == alone
    assert {type(p) for p in pieces} == {bytes}  # what a producer sends (a view compares equal)


def test_pieces_decode_to_their_rows_with_plain_strings() -> None:
    batch = result(4)
    pieces = encode_many(batch, [3, 1])
    assert [decode(p, ARROW_STREAM).to_pylist() for p in pieces] == [
        without_dictionaries(batch.slice(0, 3)).to_pylist(),
        without_dictionaries(batch.slice(3, 1)).to_pylist(),
    ]


# -- decode_many ---------------------------------------------------------------------
def test_payloads_of_one_schema_decode_as_one_run_in_order() -> None:
    payloads = encode_many(result(6), [1, 2, 3])
    (run,) = decode_many(payloads)
    assert isinstance(run, DecodedRun) and run.rows == [1, 2, 3]
    assert run.batch.to_pylist() == without_dictionaries(result(6)).to_pylist()


def test_a_change_of_schema_starts_a_new_run() -> None:
    plain = encode(pa.RecordBatch.from_pydict({"x": [1.0]}), ARROW_STREAM)
    payloads = [*encode_many(result(2), [1, 1]), plain, plain, *encode_many(result(1), [1])]
    assert runs(decode_many(payloads)) == [[1, 1], [1, 1], [1]]


def test_payloads_with_other_dictionaries_are_another_run_and_keep_their_values() -> None:
    payloads = [
        encode(result(2, "v1"), ARROW_STREAM),
        encode(result(1, "version-2"), ARROW_STREAM),
        encode(result(1, "v1"), ARROW_STREAM),
    ]
    decoded = decode_many(payloads)
    assert runs(decoded) == [[2], [1], [1]]
    assert [
        v
        for run in decoded
        if isinstance(run, DecodedRun)
        for v in run.batch.column("metadata.pipeline_version").to_pylist()
    ] == ["v1", "v1", "version-2", "v1"]
    assert all(
        run.batch.schema.field("metadata.pipeline_version").type == pa.string()
        for run in decoded
        if isinstance(run, DecodedRun)
    )


@pytest.mark.parametrize(
    "bad",
    [b"not arrow", b"", b"\xff\xff\xff\xff\x10\x00\x00\x00short", b"ARROW1\x00\x00"],
    ids=["junk", "empty", "cut", "file"],
)
def test_an_unreadable_payload_fails_alone_and_its_neighbours_decode(bad: bytes) -> None:
    good = encode_many(result(3), [1, 1, 1])
    decoded = decode_many([good[0], bad, good[1], good[2]])
    assert runs(decoded) == [[1], "CodecError", [1, 1]]
    with pytest.raises(CodecError) as alone:
        decode(bad, ARROW_STREAM)
    assert str(decoded[1]) == str(alone.value)  # what decode() says of it


def test_a_payload_whose_batch_does_not_fit_its_schema_fails_alone_in_a_run() -> None:
    good = encode_many(result(3), [1, 1, 1])
    found = frames.layout(good[0])
    assert found is not None
    other = encode(pa.RecordBatch.from_pydict({"z": [1]}), ARROW_STREAM)
    other_at = frames.layout(other)
    assert other_at is not None  # framed like the others, with their schema, but not theirs
    misfit = good[0][: found.header_end] + other[other_at.header_end :]
    decoded = decode_many([good[0], misfit, good[1], good[2]])
    assert runs(decoded) == [[1], "CodecError", [1], [1]]  # found by decoding each alone


def test_a_run_of_payloads_framed_alike_but_unreadable_fails_each_alone() -> None:
    garbage = b"\xff\xff\xff\xff\x08\x00\x00\x00" + b"\x07" * 8 + frames.END_OF_STREAM
    assert frames.layout(garbage) is not None  # framed like a stream of a schema alone
    good = encode(result(1), ARROW_STREAM)
    assert runs(decode_many([garbage, garbage, good])) == ["CodecError", "CodecError", [1]]


def test_no_pieces() -> None:
    assert encode_many(result(0), []) == []


def test_a_payload_of_several_batches_counts_all_its_rows() -> None:
    table = pa.Table.from_batches([result(2).slice(0, 1), result(2).slice(1, 1)])
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    two_batches = sink.getvalue().to_pybytes()
    (run,) = decode_many(
        [encode(result(1), ARROW_STREAM), two_batches, encode(result(3), ARROW_STREAM)]
    )
    assert run.rows == [1, 2, 3] and run.batch.num_rows == 6


def test_nothing_to_decode() -> None:
    assert decode_many([]) == []


# -- framing -----------------------------------------------------------------------------
def test_layout_of_a_stream_and_of_bytes_that_are_not_one() -> None:
    payload = encode(result(2), ARROW_STREAM)
    found = frames.layout(payload)
    assert found is not None and found.record_batches == 1
    assert payload[found.body_end :] == frames.END_OF_STREAM
    kinds, at = [], 0
    while at < found.header_end:  # the schema, then the two dictionaries
        kind, at = frames.message_at(payload, at)
        kinds.append(kind)
    assert kinds == [frames.SCHEMA, frames.DICTIONARY_BATCH, frames.DICTIONARY_BATCH]
    assert frames.message_at(payload, found.header_end)[0] == frames.RECORD_BATCH
    for bad in (b"", b"junk", payload[: found.header_end + 5], b"\x00" * 16):
        assert frames.layout(bad) is None


def test_a_payload_that_replaces_a_dictionary_midway_is_read_alone() -> None:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, result(1).schema) as writer:
        writer.write_batch(result(1, "v1"))
        writer.write_batch(result(1, "v2"))  # a new dictionary between its two batches
    replacing = sink.getvalue().to_pybytes()
    assert frames.layout(replacing) is None
    next_one = encode(result(1, "v1"), ARROW_STREAM)
    decoded = decode_many([replacing, next_one])
    assert runs(decoded) == [[2], [1]]
    versions = [
        v
        for run in decoded
        if isinstance(run, DecodedRun)
        for v in run.batch.column("metadata.pipeline_version").to_pylist()
    ]
    assert versions == ["v1", "v2", "v1"]


def test_dictionary_columns_come_back_plain_in_batches_and_chunked_tables() -> None:
    first = pa.array(["a", None, "b"]).dictionary_encode()
    second = pa.array(["c", "a"]).dictionary_encode()  # a dictionary of its own
    table = pa.table({"name": pa.chunked_array([first, second]), "n": list(range(5))})
    plain = without_dictionaries(table)
    assert plain.schema.field("name").type == pa.string()
    assert plain.column("name").to_pylist() == ["a", None, "b", "c", "a"]
    batch = without_dictionaries(pa.record_batch({"name": first}))
    assert batch.schema.field("name").type == pa.string()
    assert batch.column("name").to_pylist() == ["a", None, "b"]
