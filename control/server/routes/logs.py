"""`GET /pipelines/<name>/logs`: query, page through and export the log store."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse

from control.server.state import ServerState, get_state
from engine import codecs
from engine.columns import GROUPS, META_ROW, REQUEST_ID, ROW, TIME, group
from engine.experiments import experiment_summary
from streams.logstore import LogQueryError
from streams.shadow_logs import attach_shadows, read_shadows

router = APIRouter()

SHADOW_LAG = timedelta(minutes=5)
EXPORT_CONTENT_TYPE = "application/x-weir-arrow-frames"


def select_columns(names: list[str], dataset: list[str] | None,
                   exclude: list[str] | None) -> list[str]:
    """Columns chosen by group (`time`, `in`, `out`, `check_failures`, `anomaly`, `metadata`)
    or by exact name; shadow outputs (`out_<model>.*`) belong to `out`."""
    def chosen(column: str, picks: list[str]) -> bool:
        return column in picks or group(column) in picks

    for pick in [*(dataset or []), *(exclude or [])]:
        if pick not in GROUPS and pick not in names:
            raise LogQueryError(f"unknown dataset {pick!r}: use a group of {', '.join(GROUPS)} "
                                f"or a column of {', '.join(names)}")
    keep = [n for n in names if dataset is None or chosen(n, dataset)]
    return [n for n in keep if not (exclude and chosen(n, exclude))]


def present_columns(table: pa.Table) -> pa.Table:
    """The columns the rows have: without those null in every row (a column of another
    version's schema, or of an input field these requests did not send) and without
    `metadata.row`, which repeats `row`. With no rows, every column stays."""
    if table.num_rows == 0:
        return table
    keep = [name for name, column in zip(table.column_names, table.columns)
            if name != META_ROW and column.null_count < table.num_rows]
    return table.select(keep)


def _cursor(table: pa.Table) -> str | None:
    if table.num_rows == 0:
        return None
    last = {k: table.column(k)[table.num_rows - 1].as_py() for k in (TIME, REQUEST_ID, ROW)}
    last[TIME] = last[TIME].isoformat()
    return base64.urlsafe_b64encode(json.dumps(last).encode()).decode()


def _after_cursor(table: pa.Table, cursor: str) -> pa.Table:
    """Rows that come after the cursor row in newest-first order (time desc, id asc, row asc)."""
    try:
        last = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        at = pa.scalar(datetime.fromisoformat(last[TIME]), table.schema.field(TIME).type)
    except (ValueError, KeyError, TypeError) as exc:
        raise LogQueryError("malformed cursor: pass back the next_cursor of the previous page") from exc
    older = pc.less(table[TIME], at)
    same = pc.equal(table[TIME], at)
    later_id = pc.or_(pc.greater(table[REQUEST_ID], last[REQUEST_ID]),
                      pc.and_(pc.equal(table[REQUEST_ID], last[REQUEST_ID]),
                              pc.greater(table[ROW], last[ROW])))
    return table.filter(pc.or_(older, pc.and_(same, later_id)))


async def query_logs(state: ServerState, workspace: str, name: str, *, limit: int,
                     start: datetime | None, end: datetime | None, valid: bool | None,
                     cursor: str | None) -> pa.Table:
    state.registry.get_pipeline(workspace, name)
    await state.log_agent.sync(workspace, name)
    if cursor is None:
        table = state.log_store.query(workspace, name, limit=limit, start=start, end=end,
                                      valid=valid)
    else:
        # Rows sharing the cursor's millisecond may precede it: read a margin, then filter.
        wide = state.log_store.query(workspace, name, limit=2 * limit + 1000, start=start,
                                     end=end, valid=valid)
        table = _after_cursor(wide, cursor).slice(0, limit)
    return attach_shadows(table, _shadows_near(state, workspace, name, table))


def _shadows_near(state: ServerState, workspace: str, name: str, table: pa.Table) -> pa.Table:
    """Challenger rows in the time span of `table` (challengers answer a little later)."""
    if table.num_rows == 0:
        return pa.table({})
    times = table[TIME]
    start = pc.min(times).as_py() - SHADOW_LAG
    end = pc.max(times).as_py() + SHADOW_LAG
    return read_shadows(state.log_store, workspace, name, start=start, end=end)


def _encode(table: pa.Table, format: str) -> tuple[bytes, str]:
    batches = table.combine_chunks().to_batches()
    batch = batches[0] if batches else pa.RecordBatch.from_pylist([], schema=table.schema)
    content_type = codecs.ARROW_FILE if format == "arrow" else codecs.PANDAS_RECORDS
    return codecs.encode(batch, content_type), content_type


@router.get("/pipelines/{name}/logs")
async def logs(name: str, request: Request, workspace: str = "default",
               limit: int = Query(100, ge=0, le=1_000_000), start: datetime | None = None,
               end: datetime | None = None, valid: bool | None = None,
               dataset: list[str] | None = Query(None), dataset_exclude: list[str] | None = Query(None),
               cursor: str | None = None,
               format: Literal["json", "arrow"] = "json") -> Response:
    """Newest first; sees every inference answered before the call. A full page carries an
    `x-next-cursor` header: pass its value back as `cursor` (with the same filters) for the
    next, older page; the last page has none. Columns are those the page's rows have."""
    state = get_state(request)
    table = await query_logs(state, workspace, name, limit=limit, start=start, end=end,
                             valid=valid, cursor=cursor)
    next_cursor = _cursor(table) if table.num_rows == limit and limit else None
    table = present_columns(
        table.select(select_columns(table.schema.names, dataset, dataset_exclude)))
    body, content_type = _encode(table, format)
    headers = {"x-next-cursor": next_cursor} if next_cursor else {}
    return Response(body, media_type=content_type, headers=headers)


@router.get("/pipelines/{name}/logs/export")
async def export(name: str, request: Request, workspace: str = "default",
                 start: datetime | None = None, end: datetime | None = None,
                 valid: bool | None = None, dataset: list[str] | None = Query(None),
                 dataset_exclude: list[str] | None = Query(None)) -> StreamingResponse:
    """Every matching row, oldest first (for `export_logs`): frames of an 8-byte big-endian
    length and an Arrow IPC stream of one batch (batches may differ in columns across versions)."""
    state = get_state(request)
    state.registry.get_pipeline(workspace, name)
    await state.log_agent.sync(workspace, name)
    total = state.log_store.count(workspace, name)

    def chunks() -> Iterator[bytes]:
        for batch in state.log_store.iter_batches(workspace, name, start=start, end=end,
                                                  valid=valid):
            batch = batch.select(select_columns(batch.schema.names, dataset, dataset_exclude))
            payload = codecs.encode(batch, codecs.ARROW_STREAM)
            yield len(payload).to_bytes(8, "big") + payload

    frames = chunks()
    # A query the store refuses raises here, while the answer can still be a 400: once the
    # response has started, an error can only cut it short.
    first = await asyncio.to_thread(next, frames, None)
    return StreamingResponse(itertools.chain([] if first is None else [first], frames),
                             media_type=EXPORT_CONTENT_TYPE, headers={"x-total-rows": str(total)})


@router.get("/pipelines/{name}/experiment")
async def experiment(name: str, request: Request, workspace: str = "default",
                     start: datetime | None = None, end: datetime | None = None) -> dict[str, Any]:
    """Per-model figures of the pipeline's split or shadow, from its logs."""
    state = get_state(request)
    state.registry.get_pipeline(workspace, name)
    await state.log_agent.sync(workspace, name)
    primary = state.log_store.query(workspace, name, limit=None, start=start, end=end)
    shadows = read_shadows(state.log_store, workspace, name, start=start, end=end)
    return experiment_summary(attach_shadows(primary, shadows), shadows)
