"""The Arrow IPC codec: record batches as Arrow streams (Kafka) and files (HTTP, ``.arrow``),
one at a time or many at once (engine.codecs is the public face)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import NamedTuple, TypeVar

import numpy as np
import pyarrow as pa

from engine import _arrow_frames as frames
from engine.content_types import ARROW_FILE, ARROW_STREAM, EXPECTED, ContentType
from engine.errors import CodecError

_WRITE_OPTIONS = pa.ipc.IpcWriteOptions()
"""Passed explicitly: without options pyarrow reads two environment variables per writer."""
ARROW_ERRORS = (pa.ArrowException, OSError, ValueError)
"""What pyarrow raises on bytes or arrays it cannot read."""


def decode(payload: bytes, kind: ContentType, *, dictionaries: bool = False) -> pa.RecordBatch:
    """An Arrow IPC stream or file as one record batch (see `engine.codecs.decode`)."""
    expected = EXPECTED[kind]
    if not payload:
        raise CodecError(f"empty payload: expected {expected}")
    try:
        if kind == ARROW_STREAM:
            stream = pa.ipc.open_stream(payload)
            batch = combine(list(stream), stream.schema)
        else:
            file = pa.ipc.open_file(payload)
            batches = [file.get_batch(i) for i in range(file.num_record_batches)]
            batch = combine(batches, file.schema)
        batch.validate(full=True)
        _ = batch.schema.names  # names that are not UTF-8 fail here, not in a later caller
    except ARROW_ERRORS as exc:
        hint = ""
        if kind == ARROW_STREAM and payload.startswith(b"ARROW1"):
            hint = f"; this looks like an Arrow IPC file, send it as {ARROW_FILE!r}"
        raise CodecError(f"malformed payload ({exc}): expected {expected}{hint}") from exc
    return batch if dictionaries else without_dictionaries(batch)


def encode(batch: pa.RecordBatch, kind: ContentType) -> bytes:
    """One record batch as an Arrow IPC stream or file."""
    sink = pa.BufferOutputStream()
    new_writer = pa.ipc.new_stream if kind == ARROW_STREAM else pa.ipc.new_file
    with new_writer(sink, batch.schema, options=_WRITE_OPTIONS) as writer:
        writer.write_batch(batch)
    written: bytes = sink.getvalue().to_pybytes()
    return written


class DecodedRun(NamedTuple):
    """Consecutive payloads decoded together (see `decode_many`)."""

    batch: pa.RecordBatch
    """Their rows, in order."""
    rows: list[int]
    """How many rows each payload has."""


def decode_many(payloads: Sequence[bytes]) -> list[DecodedRun | CodecError]:
    """Arrow-stream payloads decoded in runs: consecutive payloads of one schema (and the
    same dictionaries, such as a step's result metadata) are read as one stream, at about
    the cost of one (opening a stream per payload was most of a one-row message's decode
    cost).

    Returns, in order, a run for each stretch of payloads that decoded, and a CodecError
    (what `decode` says of it) for each payload that did not, so its neighbours still
    decode. Dictionary-encoded columns come back plain, as from `decode`.
    """
    out: list[DecodedRun | CodecError] = []
    run: list[tuple[bytes, frames.Layout]] = []
    for payload in payloads:
        found = frames.layout(payload)
        if run and (found is None or not _same_header(run[0], payload, found)):
            out += _decode_run(run)
            run = []
        if found is None:
            out += _decode_alone(payload)
        else:
            run.append((payload, found))
    return out + _decode_run(run)


def _same_header(first: tuple[bytes, frames.Layout], payload: bytes, found: frames.Layout) -> bool:
    end = first[1].header_end
    return found.header_end == end and payload.startswith(memoryview(first[0])[:end])


def _decode_alone(payload: bytes) -> list[DecodedRun | CodecError]:
    try:
        batch = decode(payload, ARROW_STREAM)
    except CodecError as exc:
        return [exc]
    return [DecodedRun(batch, [batch.num_rows])]


def _each_alone(run: list[tuple[bytes, frames.Layout]]) -> list[DecodedRun | CodecError]:
    return [item for payload, _ in run for item in _decode_alone(payload)]


def _decode_run(run: list[tuple[bytes, frames.Layout]]) -> list[DecodedRun | CodecError]:
    """Payloads of one header as one stream; one by one if that fails (to find which)."""
    if len(run) <= 1:
        return _decode_alone(run[0][0]) if run else []
    first, layout = run[0]
    stream = b"".join(
        [
            memoryview(first)[: layout.header_end],
            *(memoryview(p)[at.header_end : at.body_end] for p, at in run),
            frames.END_OF_STREAM,
        ]
    )
    try:
        reader = pa.ipc.open_stream(stream)
        batches = list(reader)
        table = pa.Table.from_batches(batches, reader.schema).combine_chunks()
        # Dictionaries decoded after combining: once per column, not once per payload.
        batch = without_dictionaries(combine(table.to_batches(), table.schema))
        batch.validate(full=True)
        _ = batch.schema.names  # names that are not UTF-8 fail here, not in a later caller
    except ARROW_ERRORS:
        return _each_alone(run)
    if len(batches) != sum(at.record_batches for _, at in run):
        return _each_alone(run)
    rows, used = [], 0
    for _, at in run:
        rows.append(sum(b.num_rows for b in batches[used : used + at.record_batches]))
        used += at.record_batches
    return [DecodedRun(batch, rows)]


def encode_many(batch: pa.RecordBatch, rows: Sequence[int]) -> list[bytes]:
    """Consecutive pieces of `batch`, of `rows` rows each, as one Arrow stream each.

    The same bytes as `encode` on each piece, written in one pass: the schema and the
    dictionaries (which slices of one batch share) once, then each piece's record batch.

    :raises CodecError: the writer did not put each piece in one record batch (callers
        then encode the pieces one by one).
    """
    if len(rows) <= 1:
        return [encode(batch, ARROW_STREAM)] if rows else []
    sink = pa.BufferOutputStream()
    bounds, offset = [], 0
    with pa.ipc.new_stream(sink, batch.schema, options=_WRITE_OPTIONS) as writer:
        for n in rows:
            before = sink.tell()
            writer.write_batch(batch.slice(offset, n))
            bounds.append((before, sink.tell()))
            offset += n
    # A view of the written stream, and each piece joined from views of it in one copy:
    # copying the stream out and slicing bytes copied every piece three times more (0.5 MB
    # answers of wide rows: ~1 ms of CPU each, against ~0.2).
    data = memoryview(sink.getvalue())
    first = bounds[0][0]  # the first piece holds the schema and dictionaries too
    kind, end = frames.message_at(data, first)
    while kind in (frames.SCHEMA, frames.DICTIONARY_BATCH):
        first = end
        kind, end = frames.message_at(data, first)
    pieces = [(first, bounds[0][1]), *bounds[1:]]
    if any(frames.message_at(data, start) != (frames.RECORD_BATCH, end) for start, end in pieces):
        raise CodecError("pieces of one batch were not written as one record batch each")
    header = data[:first]
    return [b"".join((header, data[start:end], frames.END_OF_STREAM)) for start, end in pieces]


DICTIONARY_MIN_ROWS = 8
"""From how many rows `repeated` dictionary-encodes. Below it the plain text is as small on
the wire (each dictionary is a message of its own in the stream), and every reader of the
answer decodes it faster: a 1-row answer with a version and a model column took 18 us of
CPU against 48-57 with them as dictionaries, and after 2 ms idle, as a lone answer finds
a reader at 500 requests/s, 100-127 against 197-248 (30-31 against 81-85 in a quicker
sitting; bench/README.md, 2026-12-07 early afternoon)."""


@functools.lru_cache(maxsize=256)
def repeated(value: str, n: int) -> pa.Array:
    """`value` `n` times, dictionary-encoded from DICTIONARY_MIN_ROWS rows: encoded, it
    costs one copy of the text and a byte per row (a result's pipeline version and model
    name would otherwise be over half its bytes); `decode` turns it back into plain
    strings. Cached: every result of a step asks for the same few (arrays are immutable)."""
    if n < DICTIONARY_MIN_ROWS:
        return pa.array([value] * n, pa.string())
    return pa.DictionaryArray.from_arrays(
        pa.array(np.zeros(n, np.int8)), pa.array([value], pa.string())
    )


Columnar = TypeVar("Columnar", pa.RecordBatch, pa.Table)


def without_dictionaries(data: Columnar) -> Columnar:
    """Dictionary-encoded columns as plain ones, so every reader sees one type per column."""
    if not any(pa.types.is_dictionary(f.type) for f in data.schema):
        return data
    columns = [_plain(c) if pa.types.is_dictionary(c.type) else c for c in data.columns]
    return type(data).from_arrays(columns, names=data.schema.names)


def _plain(column: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """A dictionary-encoded column's values: `dictionary_decode` takes half the CPU of a
    cast to the value type (3.7 µs against 8.9 for a 1-row answer's column)."""
    if isinstance(column, pa.ChunkedArray):
        return pa.chunked_array(
            [chunk.dictionary_decode() for chunk in column.chunks], column.type.value_type
        )
    return column.dictionary_decode()


def combine(batches: list[pa.RecordBatch], schema: pa.Schema) -> pa.RecordBatch:
    """Join batches of one schema into a single batch (empty batches give an empty one)."""
    if len(batches) == 1:
        return batches[0]
    if not batches:
        return pa.RecordBatch.from_pylist([], schema=schema)
    return pa.concat_batches(batches)
