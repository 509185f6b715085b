"""The pandas-records JSON codec: a list of row objects, as
``DataFrame.to_json(orient="records")`` writes (engine.codecs is the public face).

Strict JSON both ways: NaN and infinities are written as null, times as ISO text,
durations as seconds, decimals as numbers. Binary values have no JSON form: `encode`
refuses them, while `encode_answers` (the answers of JSON requests) writes them as
base64 text and names their columns, so a reader can turn them back into bytes.
"""

from __future__ import annotations

import base64
import datetime
import json
import math
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any, NamedTuple

import pyarrow as pa
import pyarrow.compute as pc

from engine._columns import from_columns, kind
from engine.content_types import EXPECTED, PANDAS_RECORDS
from engine.errors import CodecError

_JSON_NATIVE = (
    pa.types.is_integer,
    pa.types.is_boolean,
    pa.types.is_string,
    pa.types.is_large_string,
    pa.types.is_null,
)
_BINARY = (
    pa.types.is_binary,
    pa.types.is_large_binary,
    pa.types.is_fixed_size_binary,
    pa.types.is_binary_view,
)


def decode(payload: bytes) -> pa.RecordBatch:
    """A list of row objects (or an object of column lists) as one record batch; nested
    lists become list columns, a key missing from a row gives null there."""
    expected = EXPECTED[PANDAS_RECORDS]
    if not payload:
        raise CodecError(f"empty payload: expected {expected}")
    try:
        data = json.loads(payload)
    except (ValueError, RecursionError) as exc:
        raise CodecError(f"payload is not valid JSON ({exc}): expected {expected}") from exc
    if not isinstance(data, (list, dict)):
        raise CodecError(f"expected {expected}, got {kind(data)}")
    return from_rows(data) if isinstance(data, list) else from_columns(data)


def from_rows(rows: list[Any]) -> pa.RecordBatch:
    """Build a batch from row objects; a key missing from a row gives null there."""
    names: dict[str, None] = {}
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise CodecError(f"expected {EXPECTED[PANDAS_RECORDS]}, but row {i} is {kind(row)}")
        names.update(dict.fromkeys(row))
    return from_columns({name: [row.get(name) for row in rows] for name in names})


def encode(batch: pa.RecordBatch) -> bytes:
    """Write a batch as strict pandas-records JSON.

    :raises CodecError: a column holds values JSON has no form for (binary).
    """
    return _dumps(batch.schema, [json_values(column) for column in batch.columns], batch.num_rows)


class Answer(NamedTuple):
    """An answer written as JSON (`encode_answers`)."""

    value: bytes
    base64_columns: tuple[str, ...]
    """The columns whose binary values are written as base64 text."""


def encode_answers(batch: pa.RecordBatch, rows: Sequence[int]) -> list[Answer | CodecError]:
    """Consecutive pieces of `batch`, of `rows` rows each, as pandas-records JSON each,
    binary values as base64 text (their columns named in the answer). The columns are
    turned into Python values once for all pieces (per piece, that was most of a one-row
    answer's cost).

    Returns each piece's answer, or the CodecError that names a column of it JSON has
    no form for.
    """
    named = tuple(
        name for name, field in zip(batch.schema.names, batch.schema) if _holds(field.type, _BINARY)
    )
    columns = [
        json_values(column, binary=_base64 if name in named else None)
        for name, column in zip(batch.schema.names, batch.columns)
    ]
    out: list[Answer | CodecError] = []
    at = 0
    for n in rows:
        try:
            value = _dumps(batch.schema, [values[at : at + n] for values in columns], n)
        except CodecError as exc:
            out.append(exc)
        else:
            out.append(Answer(value, named))
        at += n
    return out


def _dumps(schema: pa.Schema, columns: list[list[Any]], n: int) -> bytes:
    """`n` rows of `columns` (one list of plain values per field of `schema`) as JSON."""
    if columns:
        rows: list[dict[str, Any]] = [dict(zip(schema.names, row)) for row in zip(*columns)]
    else:
        rows = [{} for _ in range(n)]
    try:
        return json.dumps(rows, allow_nan=False, separators=(",", ":")).encode()
    except (TypeError, ValueError) as exc:
        refused = next(
            (
                f"column {name!r} ({field.type})"
                for name, field, values in zip(schema.names, schema, columns)
                if not _dumps_ok(values)
            ),
            "a column",
        )
        raise CodecError(
            f"cannot write {refused} as JSON ({exc}); cast it to string first"
        ) from exc


def _dumps_ok(values: list[Any]) -> bool:
    try:
        json.dumps(values, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


def json_values(column: pa.Array, *, binary: Callable[[bytes], str] | None = None) -> list[Any]:
    """One column as plain Python values that ``json.dumps`` accepts (binary values only
    when `binary` turns them into text)."""
    values: list[Any]
    if pa.types.is_floating(column.type):
        values = pc.if_else(pc.is_finite(column), column, None).to_pylist()
        return values
    values = column.to_pylist()
    if any(is_type(column.type) for is_type in _JSON_NATIVE):
        return values
    return [_plain(value, binary) for value in values]


def _plain(value: Any, binary: Callable[[bytes], str] | None) -> Any:
    """One Python value from Arrow as strict JSON: non-finite floats to None, times as ISO
    text, bytes through `binary`."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (list, tuple)):
        return [_plain(item, binary) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item, binary) for key, item in value.items()}
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes) and binary is not None:
        return binary(value)
    return value


def _base64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def _holds(data_type: pa.DataType, tests: tuple[Callable[[pa.DataType], bool], ...]) -> bool:
    """Whether `data_type`, or a type nested in it, passes one of `tests`."""
    if any(test(data_type) for test in tests):
        return True
    if pa.types.is_dictionary(data_type):
        return _holds(data_type.value_type, tests)
    return any(_holds(data_type.field(i).type, tests) for i in range(data_type.num_fields))
