"""`GET /pipelines/<name>/logs`, its export and the experiment figures: HTTP over
control.log_queries."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import datetime
from typing import Any, Literal

import pyarrow as pa
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse

from control.server.state import get_state
from engine import codecs

router = APIRouter()

EXPORT_CONTENT_TYPE = "application/x-weir-arrow-frames"


def _encode(table: pa.Table, format: str) -> tuple[bytes, str]:
    batches = table.combine_chunks().to_batches()
    batch = batches[0] if batches else pa.RecordBatch.from_pylist([], schema=table.schema)
    content_type = codecs.ARROW_FILE if format == "arrow" else codecs.PANDAS_RECORDS
    return codecs.encode(batch, content_type), content_type


@router.get("/pipelines/{name}/logs")
async def logs(
    name: str,
    request: Request,
    workspace: str = "default",
    limit: int = Query(100, ge=0, le=1_000_000),
    start: datetime | None = None,
    end: datetime | None = None,
    valid: bool | None = None,
    dataset: list[str] | None = Query(None),
    dataset_exclude: list[str] | None = Query(None),
    cursor: str | None = None,
    format: Literal["json", "arrow"] = "json",
) -> Response:
    """Newest first; sees every inference answered before the call. A full page carries an
    `x-next-cursor` header: pass its value back as `cursor` (with the same filters) for the
    next, older page; the last page has none. Columns are those the page's rows have."""
    queries = get_state(request).logs
    page = await queries.page(
        workspace,
        name,
        limit=limit,
        start=start,
        end=end,
        valid=valid,
        cursor=cursor,
        dataset=dataset,
        exclude=dataset_exclude,
    )
    body, content_type = await queries.in_thread(_encode, page.table, format)  # up to 1M rows
    headers = {"x-next-cursor": page.next_cursor} if page.next_cursor else {}
    return Response(body, media_type=content_type, headers=headers)


@router.get("/pipelines/{name}/logs/export")
async def export(
    name: str,
    request: Request,
    workspace: str = "default",
    start: datetime | None = None,
    end: datetime | None = None,
    valid: bool | None = None,
    dataset: list[str] | None = Query(None),
    dataset_exclude: list[str] | None = Query(None),
) -> StreamingResponse:
    """Every matching row, oldest first (for `export_logs`): frames of an 8-byte big-endian
    length and an Arrow IPC stream of one batch (batches may differ in columns across versions)."""
    queries = get_state(request).logs
    total, batches = await queries.export(
        workspace, name, start=start, end=end, valid=valid, dataset=dataset, exclude=dataset_exclude
    )

    def chunks() -> Iterator[bytes]:
        for batch in batches:
            payload = codecs.encode(batch, codecs.ARROW_STREAM)
            yield len(payload).to_bytes(8, "big") + payload

    frames = chunks()
    # A query the store refuses raises here, while the answer can still be a 400: once the
    # response has started, an error can only cut it short.
    first = await queries.in_thread(next, frames, None)
    return StreamingResponse(
        itertools.chain([] if first is None else [first], frames),
        media_type=EXPORT_CONTENT_TYPE,
        headers={"x-total-rows": str(total)},
    )


@router.get("/pipelines/{name}/experiment")
async def experiment(
    name: str,
    request: Request,
    workspace: str = "default",
    start: datetime | None = None,
    end: datetime | None = None,
) -> dict[str, Any]:
    """Per-model figures of the pipeline's split or shadow, from its logs."""
    return await get_state(request).logs.experiment(workspace, name, start=start, end=end)
