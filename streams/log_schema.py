"""The log store's row contract: the columns every row needs, the errors, and argument checks.

A batch given to ``LogStore.append`` must hold ``REQUIRED_SCHEMA``'s columns (cast to their types
if they are not); a pipeline's stored columns are the union of its files' columns, unified with
``pa.unify_schemas(..., promote_options="permissive")``. A query's time range and columns are
checked here before any file is read.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import pyarrow as pa

from engine.columns import (
    ANOMALY_COUNT,
    CHECK_FAILURES,
    META_ELAPSED,
    META_MODEL,
    META_VERSION,
    REQUEST_ID,
    ROW,
    TIME,
    TIME_TYPE,
)
from engine.errors import WeirError
from streams._parquet_files import DataFile, FileCatalog, to_ms

REQUIRED_SCHEMA = pa.schema(
    [
        (TIME, TIME_TYPE),
        (REQUEST_ID, pa.string()),
        (ROW, pa.int32()),
        (ANOMALY_COUNT, pa.int32()),
        (CHECK_FAILURES, pa.int32()),  # how many checks the row failed
        (META_VERSION, pa.string()),
        (META_ELAPSED, pa.int64()),
        (META_MODEL, pa.string()),
    ]
)
KEYS_SCHEMA = pa.schema([REQUIRED_SCHEMA.field(REQUEST_ID), REQUIRED_SCHEMA.field(ROW)])
"""The columns that identify a row: ``(request_id, row)``."""


class LogStoreError(WeirError):
    """The log store was given an invalid workspace or pipeline name."""


class LogSchemaError(LogStoreError):
    """A batch for ``append`` lacks a required column or clashes with stored column types."""


class LogQueryError(LogStoreError):
    """A log query asked for something impossible (one-sided range, unknown column, ...)."""


def validated(table: pa.Table) -> pa.Table:
    """``table`` with the required columns cast to their types, or a LogSchemaError."""
    missing = [n for n in REQUIRED_SCHEMA.names if n not in table.schema.names]
    if missing:
        raise LogSchemaError(
            f"log batch lacks required column(s) {', '.join(missing)}; every log row needs "
            f"{', '.join(REQUIRED_SCHEMA.names)}"
        )
    if not pa.types.is_timestamp(table.schema.field(TIME).type):
        raise LogSchemaError(
            f"log column {TIME!r} must be a timestamp, got {table.schema.field(TIME).type}"
        )
    for field in REQUIRED_SCHEMA:
        index = table.schema.get_field_index(field.name)
        column = table.column(index)
        if column.type != field.type:
            try:
                table = table.set_column(index, field, column.cast(field.type))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
                raise LogSchemaError(
                    f"log column {field.name!r} must be {field.type}, got {column.type}"
                ) from exc
    for name in (TIME, REQUEST_ID, ROW):
        if table.column(name).null_count:
            raise LogSchemaError(f"log column {name!r} has nulls; every row needs one")
    return table


def stored_schema(catalog: FileCatalog, files: list[DataFile]) -> pa.Schema:
    """The columns ``files`` hold together (the required ones if there are none)."""
    try:
        return catalog.unified_schema(files, REQUIRED_SCHEMA)
    except (pa.ArrowTypeError, pa.ArrowInvalid) as exc:
        raise LogQueryError(
            f"stored logs have clashing column types ({exc}); delete the files of the "
            "version that logged the clashing column"
        ) from exc


def check_compatible(stored: pa.Schema, schema: pa.Schema, where: object) -> None:
    """Raise LogSchemaError unless a batch of ``schema`` can join logs stored as ``stored``."""
    try:
        pa.unify_schemas([stored, schema], promote_options="permissive")
    except (pa.ArrowTypeError, pa.ArrowInvalid) as exc:
        raise LogSchemaError(
            f"logs in {where} cannot take this batch: {exc}. A column changed to a "
            "type the stored logs cannot be unified with; log it under a new name"
        ) from exc


def time_span(start: datetime | None, end: datetime | None) -> tuple[int, int] | None:
    """``[start, end)`` in epoch milliseconds, None for no range; LogQueryError if one-sided."""
    if start is None and end is None:
        return None
    if start is None or end is None:
        raise LogQueryError(
            f"give both start and end for a time range, or neither (got start={start}, end={end})"
        )
    span = to_ms(start), to_ms(end)
    if span[0] > span[1]:
        raise LogQueryError(f"start ({start}) is after end ({end})")
    return span


def projection(schema: pa.Schema, columns: Sequence[str] | None) -> tuple[pa.Schema, pa.Schema]:
    """The output schema, and the schema to read: the output plus the sort and identity keys."""
    if columns is None:
        return schema, schema
    unknown = [c for c in columns if c not in schema.names]
    if unknown:
        raise LogQueryError(
            f"unknown column(s) {', '.join(unknown)}; available columns: {', '.join(schema.names)}"
        )
    wanted = {*columns, TIME, REQUEST_ID, ROW}
    out = pa.schema([schema.field(c) for c in columns])
    return out, pa.schema([f for f in schema if f.name in wanted])
