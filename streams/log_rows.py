"""Log rows: a pipeline's answers and failed requests as the rows the log store keeps.

Each row is identified by its request id and its index in the request
(`with_row_ids`); Arrow result messages are made rows in bulk (`result_rows`),
JSON ones (the answers of JSON requests) one at a time (`json_result_rows`), and
a failed request's error reply gives one row per input row (`error_rows`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from engine import codecs
from engine.answers import decode_answer
from engine.errors import CodecError
from engine.columns import (
    ANOMALY_COUNT,
    CHECK_FAILURES,
    META_ELAPSED,
    META_ERROR,
    META_MODEL,
    META_ROW,
    META_SHADOW,
    META_TRACEPARENT,
    META_VERSION,
    REQUEST_ID,
    ROW,
    TIME,
    TIME_TYPE,
)
from engine.steps import ROW as MESSAGE_ROW
from streams.log_schema import REQUIRED_SCHEMA
from streams.messages import Envelope, Requests, request_rows
from streams.trace import traceparent_of

log = logging.getLogger(__name__)


def with_row_ids(
    batch: pa.RecordBatch, request_id: str | Requests, rows: pa.Array | None = None
) -> pa.RecordBatch:
    """Add the (request_id, row) columns that identify each log row.

    A row's index is its index in the request: `rows`, else the batch's
    `metadata.row` (a split answers a request in parts), else its position.
    `request_id` is the requests a coalesced record carries where it carries
    several (streams.messages.REQUESTS): each row then gets its own.
    """
    n = batch.num_rows
    if rows is None and META_ROW in batch.schema.names:
        rows = batch.column(META_ROW)
    rows = pa.array(range(n), pa.int32()) if rows is None else rows.cast(pa.int32())
    ids, rows = _row_ids(request_id, rows)
    return batch.append_column(REQUEST_ID, ids).append_column(ROW, rows)


def _row_ids(request_id: str | Requests, rows: pa.Array) -> tuple[pa.Array, pa.Array]:
    """(request id, index in the request) of each row of one message, given the rows' index
    in the message."""
    if isinstance(request_id, str):
        return pa.array([request_id] * len(rows), pa.string()), rows
    which, local = request_rows(request_id, rows.to_numpy(zero_copy_only=False))
    ids = pa.array([rid for rid, _ in request_id], pa.string()).take(pa.array(which))
    return ids, pa.array(local.astype(np.int32))


def result_rows(
    results: Sequence[tuple[bytes, str | Requests, str | None]],
) -> list[pa.RecordBatch]:
    """Result messages (Arrow stream values, each with its request id, or the requests a
    coalesced record carries, and its traceparent) as log rows.

    The rows `with_row_ids` gives for each decoded message, but decoded and converted
    in bulk: consecutive messages of one schema are read as one stream and their id
    columns built at once (per-message work was most of the log agent's cost for
    one-row requests). Where any of them came with a trace context, the rows get a
    `metadata.traceparent` column (null for the others). An unreadable message is
    logged and skipped.
    """
    out, at = [], 0
    for run in codecs.decode_many([value for value, _, _ in results]):
        if isinstance(run, CodecError):
            log.error("skipping the unreadable result of request %s: %s", results[at][1], run)
            at += 1
            continue
        counts = np.asarray(run.rows)
        owners = [request_id for _, request_id, _ in results[at : at + len(counts)]]
        each = pa.array(np.repeat(np.arange(len(counts)), counts))
        traces = [trace for _, _, trace in results[at : at + len(counts)]]
        at += len(counts)
        if META_ROW in run.batch.schema.names:
            rows = run.batch.column(META_ROW).cast(pa.int32())
        else:  # each message's rows numbered from 0
            starts = np.repeat(np.cumsum(counts) - counts, counts)
            rows = pa.array((np.arange(counts.sum()) - starts).astype(np.int32))
        if all(isinstance(owner, str) for owner in owners):
            ids = pa.array(owners, pa.string()).take(each)
        else:  # coalesced records: each row's own request
            firsts = np.cumsum(counts) - counts
            pairs = [
                _row_ids(owner, rows.slice(first, count))
                for owner, first, count in zip(owners, firsts, counts)
            ]
            ids = pa.concat_arrays([i for i, _ in pairs])
            rows = pa.concat_arrays([r for _, r in pairs])
        batch = run.batch.append_column(REQUEST_ID, ids).append_column(ROW, rows)
        if any(traces):
            batch = batch.append_column(META_TRACEPARENT, pa.array(traces, pa.string()).take(each))
        out.append(batch)
    return out


def json_result_rows(env: Envelope, value: bytes) -> pa.RecordBatch | None:
    """A JSON result message as log rows: those `result_rows` gives its Arrow form, as far
    as JSON can say them (engine.answers); None (logged) if it cannot be read."""
    try:
        batch = decode_answer(value, env.content_type, env.base64_columns)
    except CodecError as exc:
        log.error("skipping the unreadable result of request %s: %s", env.request_id, exc)
        return None
    batch = with_row_ids(batch, env.requests or env.request_id)
    trace = traceparent_of(env.extra)
    if trace is not None:
        batch = batch.append_column(
            META_TRACEPARENT, pa.array([trace] * batch.num_rows, pa.string())
        )
    return batch


def error_rows(env: Envelope, value: bytes | None, time_ms: int) -> pa.RecordBatch:
    """The log rows of a failed request: its `in.*` columns when known, and the error.

    Timed by the request's start when known (as result rows are), else `time_ms`.
    """
    carried: pa.RecordBatch | None = None
    if value:
        try:
            carried = decode_answer(value, env.content_type, env.base64_columns)
        except CodecError:
            carried = None
    if carried is None or carried.num_rows == 0:
        carried = pa.RecordBatch.from_pydict({}, schema=pa.schema([]))
    rows = None
    if MESSAGE_ROW in carried.schema.names:
        rows = carried.column(MESSAGE_ROW)
        carried = carried.drop_columns([MESSAGE_ROW])
    n = max(carried.num_rows, 1)
    error = env.error or {}
    text = f"{error.get('type', 'Error')} in step {error.get('step', '?')!r}: {error.get('message', '')}"
    failed_ms = time_ms
    time_ms = env.started_ns // 1_000_000 if env.started_ns > 0 else time_ms
    columns: dict[str, pa.Array] = {TIME: pa.array([time_ms] * n, TIME_TYPE)}
    if carried.num_rows:
        columns.update(zip(carried.schema.names, carried.columns, strict=True))
    columns.update(
        {
            CHECK_FAILURES: _no_check_failures(n),
            ANOMALY_COUNT: pa.array([1] * n, pa.int32()),
            META_VERSION: pa.array([env.version] * n, pa.string()),
            META_MODEL: pa.array([error.get("model", "")] * n, pa.string()),
            META_ELAPSED: pa.array(
                [max(failed_ms * 1_000_000 - env.started_ns, 0)] * n, pa.int64()
            ),
            META_ERROR: pa.array([text] * n, pa.string()),
        }
    )
    if env.shadow is not None:
        columns[META_SHADOW] = pa.array([env.shadow] * n, pa.string())
    trace = traceparent_of(env.extra)
    if trace is not None:
        columns[META_TRACEPARENT] = pa.array([trace] * n, pa.string())
    return with_row_ids(pa.RecordBatch.from_pydict(columns), env.requests or env.request_id, rows)


def _no_check_failures(n: int) -> pa.Array:
    """`check_failures` of rows no check ran on, in the type the store requires."""
    kind = REQUIRED_SCHEMA.field(CHECK_FAILURES).type
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return pa.array([[] for _ in range(n)], kind)
    return pa.array([0] * n, kind)
