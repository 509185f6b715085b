"""Codecs: every conversion between wire bytes, numpy, pandas and Arrow record batches.

Arrow is the currency: ``decode`` turns a payload into one ``pa.RecordBatch`` and
``encode`` turns one back into bytes, keyed by content type. The numpy and pandas
helpers below are the only place weir converts to or from those libraries.
"""

from __future__ import annotations

import datetime
import functools
import json
import math
import sys
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final, Literal, NamedTuple, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine import _arrow_frames as frames
from engine.errors import CodecError

if TYPE_CHECKING:
    import pandas as pd

ARROW_STREAM: Final = "application/vnd.apache.arrow.stream"
"""Arrow IPC stream holding exactly one record batch; what travels on Kafka."""
ARROW_FILE: Final = "application/vnd.apache.arrow.file"
"""Arrow IPC file format, used over HTTP and for ``.arrow`` files."""
PANDAS_RECORDS: Final = "application/json; format=pandas-records"
"""JSON list of row objects, as ``DataFrame.to_json(orient="records")`` writes."""

TENSOR_COLUMN: Final = "tensor"
"""A pipeline input's one column may carry this name whatever the first model calls its input
(the guide's `in.tensor`); a numpy array given as input becomes a column of this name."""

ContentType = Literal[
    "application/vnd.apache.arrow.stream",
    "application/vnd.apache.arrow.file",
    "application/json; format=pandas-records",
]

_MEDIA_TYPES: dict[str, ContentType] = {
    ARROW_STREAM: ARROW_STREAM, ARROW_FILE: ARROW_FILE, "application/json": PANDAS_RECORDS
}
_CANONICAL = frozenset({ARROW_STREAM, ARROW_FILE, PANDAS_RECORDS})
_JSON_FORMATS = frozenset({"pandas-records", "records"})
_WRITE_OPTIONS = pa.ipc.IpcWriteOptions()
"""Passed explicitly: without options pyarrow reads two environment variables per writer."""
_ARROW_ERRORS = (pa.ArrowException, OSError, ValueError)
_JSON_NATIVE = (pa.types.is_integer, pa.types.is_boolean, pa.types.is_string,
                pa.types.is_large_string, pa.types.is_null)
_LISTS = (pa.types.is_list, pa.types.is_large_list, pa.types.is_fixed_size_list)
_NUMERIC = (pa.types.is_integer, pa.types.is_floating, pa.types.is_boolean, pa.types.is_decimal)
_JSON_KINDS = {type(None): "null", bool: "a boolean", int: "a number", float: "a number",
               str: "a string", list: "a list", dict: "an object"}
_EXPECTED: dict[ContentType, str] = {
    ARROW_STREAM: f"an Arrow IPC stream ({ARROW_STREAM!r})",
    ARROW_FILE: f"an Arrow IPC file ({ARROW_FILE!r})",
    PANDAS_RECORDS: 'a JSON list of row objects, e.g. [{"x": [1.0, 2.0]}]',
}


def normalize_content_type(
    header: str | bytes | None, default: ContentType = ARROW_STREAM
) -> ContentType:
    """Map a Content-Type header to one of weir's content types.

    Case, spaces and parameter order do not matter; plain ``application/json``
    means pandas records, and a missing header gives ``default``.
    """
    if header in _CANONICAL:  # the hot path: weir's own constants
        return header  # type: ignore[return-value]
    if isinstance(header, bytes):
        header = header.decode("latin-1")
    if not header or not header.strip():
        return default
    media, *params = (part.strip().lower() for part in header.split(";"))
    found = _MEDIA_TYPES.get(media)
    formats = {
        value.strip().strip('"')
        for key, _, value in (param.partition("=") for param in params)
        if key.strip() == "format"
    }
    if found is None or (found == PANDAS_RECORDS and not formats <= _JSON_FORMATS):
        accepted = ", ".join(repr(ct) for ct in (ARROW_STREAM, ARROW_FILE, PANDAS_RECORDS))
        raise CodecError(
            f"unsupported content type {header!r}: use one of {accepted} "
            "(plain 'application/json' means pandas records)"
        )
    return found


def decode(payload: bytes, content_type: str, *, dictionaries: bool = False) -> pa.RecordBatch:
    """Decode a payload into one record batch; several Arrow batches are joined into one.

    JSON must be a list of row objects (or an object of column lists); nested lists
    become list columns. Dictionary-encoded columns come back plain unless
    `dictionaries` is set (for a caller that decodes many batches at once, later, with
    `without_dictionaries`).
    """
    kind = normalize_content_type(content_type)
    expected = _EXPECTED[kind]
    if not payload:
        raise CodecError(f"empty payload: expected {expected}")
    if kind == PANDAS_RECORDS:
        try:
            data = json.loads(payload)
        except (ValueError, RecursionError) as exc:
            raise CodecError(f"payload is not valid JSON ({exc}): expected {expected}") from exc
        if not isinstance(data, (list, dict)):
            raise CodecError(f"expected {expected}, got {_kind(data)}")
        return _from_rows(data) if isinstance(data, list) else _from_columns(data)
    try:
        if kind == ARROW_STREAM:
            stream = pa.ipc.open_stream(payload)
            batch = _combine(list(stream), stream.schema)
        else:
            file = pa.ipc.open_file(payload)
            batches = [file.get_batch(i) for i in range(file.num_record_batches)]
            batch = _combine(batches, file.schema)
        batch.validate(full=True)
        _ = batch.schema.names  # names that are not UTF-8 fail here, not in a later caller
    except _ARROW_ERRORS as exc:
        hint = ""
        if kind == ARROW_STREAM and payload.startswith(b"ARROW1"):
            hint = f"; this looks like an Arrow IPC file, send it as {ARROW_FILE!r}"
        raise CodecError(f"malformed payload ({exc}): expected {expected}{hint}") from exc
    return batch if dictionaries else without_dictionaries(batch)


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
    stream = b"".join([memoryview(first)[:layout.header_end],
                       *(memoryview(p)[at.header_end:at.body_end] for p, at in run),
                       frames.END_OF_STREAM])
    try:
        reader = pa.ipc.open_stream(stream)
        batches = list(reader)
        table = pa.Table.from_batches(batches, reader.schema).combine_chunks()
        # Dictionaries decoded after combining: once per column, not once per payload.
        batch = without_dictionaries(_combine(table.to_batches(), table.schema))
        batch.validate(full=True)
        _ = batch.schema.names  # names that are not UTF-8 fail here, not in a later caller
    except _ARROW_ERRORS:
        return _each_alone(run)
    if len(batches) != sum(at.record_batches for _, at in run):
        return _each_alone(run)
    rows, used = [], 0
    for _, at in run:
        rows.append(sum(b.num_rows for b in batches[used:used + at.record_batches]))
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
    data = sink.getvalue().to_pybytes()
    first = bounds[0][0]  # the first piece holds the schema and dictionaries too
    kind, end = frames.message_at(data, first)
    while kind in (frames.SCHEMA, frames.DICTIONARY_BATCH):
        first = end
        kind, end = frames.message_at(data, first)
    pieces = [(first, bounds[0][1]), *bounds[1:]]
    if any(frames.message_at(data, start) != (frames.RECORD_BATCH, end) for start, end in pieces):
        raise CodecError("pieces of one batch were not written as one record batch each")
    header = data[:first]
    return [header + data[start:end] + frames.END_OF_STREAM for start, end in pieces]


@functools.lru_cache(maxsize=256)
def repeated(value: str, n: int) -> pa.Array:
    """`value` `n` times, dictionary-encoded: encoded, it costs one copy of the text and a
    byte per row (a result's pipeline version and model name would otherwise be over
    half its bytes); `decode` turns it back into plain strings. Cached: every result of
    a step asks for the same few (arrays are immutable)."""
    return pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int8)),
                                          pa.array([value], pa.string()))


Columnar = TypeVar("Columnar", pa.RecordBatch, pa.Table)


def without_dictionaries(data: Columnar) -> Columnar:
    """Dictionary-encoded columns as plain ones, so every reader sees one type per column."""
    if not any(pa.types.is_dictionary(f.type) for f in data.schema):
        return data
    columns = [c.cast(c.type.value_type) if pa.types.is_dictionary(c.type) else c
               for c in data.columns]
    return type(data).from_arrays(columns, names=data.schema.names)


def encode(batch: pa.RecordBatch, content_type: str) -> bytes:
    """Encode one record batch as bytes of the given content type.

    JSON output is strict: NaN and infinities become null, times become ISO text.
    """
    kind = normalize_content_type(content_type)
    if kind == PANDAS_RECORDS:
        return _encode_json(batch)
    sink = pa.BufferOutputStream()
    new_writer = pa.ipc.new_stream if kind == ARROW_STREAM else pa.ipc.new_file
    with new_writer(sink, batch.schema, options=_WRITE_OPTIONS) as writer:
        writer.write_batch(batch)
    return sink.getvalue().to_pybytes()


def column_to_ndarray(column: pa.Array | pa.ChunkedArray, *, name: str = "column") -> np.ndarray:
    """Turn a column into an array of shape (N,), or (N, d1, d2, ...) for (nested) list columns.

    :raises CodecError: rows differ in shape (see `column_values` for such columns), or
        numeric data holds nulls.
    """
    found = column_values(column, name=name)
    if isinstance(found, list):
        lengths = [len(row) for row in found]
        raise CodecError(
            f"the codec refused column {name!r}: rows of column {name!r} have lengths "
            f"{min(lengths)} and {max(lengths)}; every "
            "row must have the same shape to make one tensor (weir never pads: make the rows "
            "one shape in a Python step, which takes such a column as one array per row)")
    return found


def column_values(column: pa.Array | pa.ChunkedArray, *,
                  name: str = "column") -> np.ndarray | list[np.ndarray]:
    """A column as one array (see `column_to_ndarray`) when its rows share a shape, else as
    one array per row: a ragged column (file bytes, audio, token ids of varying lengths).

    :raises CodecError: a row is itself ragged (it cannot be one array), or nulls.
    """
    values = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    shape = [len(values)]
    while any(is_type(values.type) for is_type in _LISTS):
        if values.null_count:
            raise CodecError(f"column {name!r} has null rows; fill or drop them")
        if pa.types.is_fixed_size_list(values.type):
            size = values.type.list_size
            # The child values of these rows (flatten() goes through pyarrow.compute: slower).
            values = values.values.slice(values.offset * size, len(values) * size)
        else:
            lengths = pc.list_value_length(values).to_numpy(zero_copy_only=False)
            if len(shape) == 1 and lengths.size and lengths.min() != lengths.max():
                return _ragged_rows(values.flatten(), lengths, name)
            if lengths.size and lengths.min() != lengths.max():
                raise CodecError(
                    f"the codec refused column {name!r}: its rows hold lists of lengths "
                    f"{lengths.min()} and {lengths.max()} below the first level; each row must "
                    "be one array (rows may differ in shape, but not within a row)")
            size = int(lengths[0]) if lengths.size else 0
            values = values.flatten()
        shape.append(size)
    if values.null_count and any(is_type(values.type) for is_type in _NUMERIC):
        raise CodecError(f"column {name!r} has null values; fill or drop them")
    return values.to_numpy(zero_copy_only=False).reshape(shape)


def _ragged_rows(items: pa.Array, lengths: np.ndarray, name: str) -> list[np.ndarray]:
    """Rows of a list column whose lengths differ: each a view of the items' one array."""
    inner = column_values(items, name=name)
    if isinstance(inner, list):
        raise CodecError(
            f"the codec refused column {name!r}: the items of its rows differ in shape; each "
            "row must be one array (rows may differ in shape, but not within a row)")
    return np.split(inner, np.cumsum(lengths)[:-1])


def rows_to_column(rows: Sequence[np.ndarray], *, name: str = "column") -> pa.Array:
    """One array per row, of one dtype and trailing shape but any length, as a list column
    (`column_values` inverts it)."""
    arrays = [np.asarray(row) for row in rows]
    if not arrays:
        return pa.array([], pa.list_(pa.null()))
    kinds = {(a.dtype, a.shape[1:]) for a in arrays if a.ndim}
    if len(kinds) > 1 or any(a.ndim == 0 for a in arrays):
        found = ", ".join(f"{dtype} {list(trailing)}" for dtype, trailing in sorted(kinds, key=str))
        raise CodecError(
            f"column {name!r} is one array per row, but they differ in more than their first "
            f"dimension (dtype and trailing shape: {found or 'scalars'}); return rows of one "
            "dtype whose shapes differ only in length")
    items = ndarray_to_column(np.concatenate(arrays))
    offsets = np.concatenate([[0], np.cumsum([len(a) for a in arrays])])
    offset_type = pa.int32() if offsets[-1] < 2**31 else pa.int64()
    list_type = pa.ListArray if offset_type == pa.int32() else pa.LargeListArray
    return list_type.from_arrays(pa.array(offsets, offset_type), items)


def ndarray_to_column(array: np.ndarray) -> pa.Array:
    """Turn an array of shape (N,) or (N, d1, ...) into a column, zero-copy where possible.

    Extra dimensions become nested ``fixed_size_list``s; ``column_to_ndarray`` inverts it.
    """
    array = np.asarray(array)
    if array.ndim == 0:
        raise CodecError("a column needs at least one dimension (rows); got a scalar")
    try:
        column = pa.array(np.ascontiguousarray(array).reshape(-1))
        for depth in range(array.ndim - 1, 0, -1):
            rows = math.prod(array.shape[:depth])
            column = pa.Array.from_buffers(
                pa.list_(column.type, array.shape[depth]), rows, [None], children=[column]
            )
    except (pa.ArrowException, OverflowError, TypeError, ValueError) as exc:
        raise CodecError(f"cannot make a column of an array of shape {array.shape} and dtype "
                         f"{array.dtype} ({exc}): use numbers, bools or strings of one type, "
                         "and dimensions Arrow can hold") from exc
    return column


def batch_from_arrays(arrays: Mapping[str, np.ndarray | list[np.ndarray]]) -> pa.RecordBatch:
    """Build a record batch from named numpy arrays of shape (N,) or (N, d1, ...) sharing N;
    a list of N arrays (one per row, lengths may differ) becomes a list column."""
    return _from_columns(arrays)


def batch_to_arrays(batch: pa.RecordBatch, *,
                    ragged: bool = False) -> dict[str, np.ndarray | list[np.ndarray]]:
    """Turn every column of a record batch into a numpy array (see ``column_to_ndarray``).

    With `ragged`, a column whose rows differ in shape becomes a list of arrays, one per row
    (``column_values``); without, it raises CodecError.
    """
    convert = column_values if ragged else column_to_ndarray
    return {
        name: convert(batch.column(i), name=name)
        for i, name in enumerate(batch.schema.names)
    }


def batch_from_pandas(df: pd.DataFrame) -> pa.RecordBatch:
    """Build a record batch from a DataFrame, dropping its index; list cells become list columns."""
    try:
        return pa.RecordBatch.from_pandas(df, preserve_index=False)
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise CodecError(
            f"cannot convert DataFrame ({exc}): every column must hold one type, "
            "and list cells must be one-dimensional"
        ) from exc


def batch_to_pandas(batch: pa.RecordBatch) -> pd.DataFrame:
    """Turn a record batch into a DataFrame; list columns give numpy-array cells."""
    return batch.to_pandas()


def to_record_batch(data: Any) -> pa.RecordBatch:
    """Turn any supported table-like value into one record batch.

    Accepts a ``pa.RecordBatch``, a ``pa.Table``, a pandas DataFrame, a list of row
    dicts, a dict of columns (lists or numpy arrays), or a numpy array with rows first
    (one column, named ``TENSOR_COLUMN``).
    """
    if isinstance(data, pa.RecordBatch):
        return data
    if isinstance(data, np.ndarray):
        if data.ndim == 0:
            raise CodecError("a numpy array needs a first axis of rows; got a scalar")
        return batch_from_arrays({TENSOR_COLUMN: data})
    if isinstance(data, pa.Table):
        return _combine(data.to_batches(), data.schema)
    pandas = sys.modules.get("pandas")
    if pandas is not None and isinstance(data, pandas.DataFrame):
        return batch_from_pandas(data)
    if isinstance(data, list):
        return _from_rows(data)
    if isinstance(data, Mapping):
        return _from_columns(data)
    raise CodecError(
        f"cannot make a record batch from {type(data).__name__}: pass a pyarrow "
        "RecordBatch or Table, a pandas DataFrame, a list of row dicts, a dict of columns "
        "or a numpy array with rows first"
    )


def _combine(batches: list[pa.RecordBatch], schema: pa.Schema) -> pa.RecordBatch:
    """Join batches of one schema into a single batch (empty batches give an empty one)."""
    if len(batches) == 1:
        return batches[0]
    if not batches:
        return pa.RecordBatch.from_pylist([], schema=schema)
    return pa.concat_batches(batches)


def _from_rows(rows: list[Any]) -> pa.RecordBatch:
    """Build a batch from row objects; a key missing from a row gives null there."""
    names: dict[str, None] = {}
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise CodecError(f"expected {_EXPECTED[PANDAS_RECORDS]}, but row {i} is {_kind(row)}")
        names.update(dict.fromkeys(row))
    return _from_columns({name: [row.get(name) for row in rows] for name in names})


def _from_columns(columns: Mapping[str, Any]) -> pa.RecordBatch:
    """Build a batch from column lists (or numpy arrays) that all have one value per row."""
    arrays: list[pa.Array] = []
    for name, values in columns.items():
        if isinstance(values, (np.ndarray, np.generic)):
            arrays.append(ndarray_to_column(values))
            continue
        if isinstance(values, list) and values and all(isinstance(v, np.ndarray) for v in values):
            arrays.append(rows_to_column(values, name=str(name)))
            continue
        if isinstance(values, dict):  # pandas "columns" orient: {"col": {"0": v, "1": v}}
            values = list(values.values())
        if not isinstance(values, list):
            raise CodecError(
                f"column {name!r} is {_kind(values)}: expected a list of values, "
                'e.g. {"x": [1.0, 2.0]}'
            )
        try:
            arrays.append(pa.array(values))
        except (pa.ArrowException, TypeError, ValueError, OverflowError) as exc:
            raise CodecError(
                f"column {name!r} has inconsistent types ({exc}); every row must hold the same type"
            ) from exc
    lengths = {name: len(array) for name, array in zip(columns, arrays)}
    if len(set(lengths.values())) > 1:
        raise CodecError(
            f"columns have different lengths {lengths}; every column needs one value per row"
        )
    try:
        return pa.RecordBatch.from_arrays(arrays, names=[str(name) for name in columns])
    except _ARROW_ERRORS as exc:
        raise CodecError(f"cannot build a record batch ({exc})") from exc


def _encode_json(batch: pa.RecordBatch) -> bytes:
    """Write a batch as strict pandas-records JSON."""
    columns = [json_values(column) for column in batch.columns]
    if columns:
        rows: list[dict[str, Any]] = [
            dict(zip(batch.schema.names, row)) for row in zip(*columns)
        ]
    else:
        rows = [{} for _ in range(batch.num_rows)]
    try:
        return json.dumps(rows, allow_nan=False, separators=(",", ":")).encode()
    except (TypeError, ValueError) as exc:
        raise CodecError(
            f"cannot write batch as JSON ({exc}); cast such columns to string first"
        ) from exc


def json_values(column: pa.Array) -> list[Any]:
    """One column as plain Python values that ``json.dumps`` accepts."""
    if pa.types.is_floating(column.type):
        return pc.if_else(pc.is_finite(column), column, None).to_pylist()
    values = column.to_pylist()
    if any(is_type(column.type) for is_type in _JSON_NATIVE):
        return values
    return [_plain(value) for value in values]


def _plain(value: Any) -> Any:
    """One Python value from Arrow as strict JSON: non-finite floats to None, times as ISO text."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        return float(value)
    return value


def _kind(value: Any) -> str:
    """Name a parsed JSON value's type the way a user would, e.g. 'a number'."""
    return _JSON_KINDS.get(type(value), f"a {type(value).__name__}")
