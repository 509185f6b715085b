"""`GET /pipelines/<name>/logs`: query the log store."""

from __future__ import annotations

from typing import Literal

import pyarrow as pa
from fastapi import APIRouter, Request, Response

from control.server.state import get_state
from engine import codecs

router = APIRouter()


@router.get("/pipelines/{name}/logs")
async def logs(name: str, request: Request, workspace: str = "default", limit: int = 100,
               valid: bool | None = None,
               format: Literal["json", "arrow"] = "json") -> Response:
    """Newest first. Waits until what the log topic holds now is in the store."""
    state = get_state(request)
    state.registry.get_pipeline(workspace, name)
    await state.log_agent.sync(workspace, name)
    table = state.log_store.query(workspace, name, limit=limit, valid=valid)
    batch = table.combine_chunks().to_batches()
    merged = batch[0] if batch else pa.RecordBatch.from_pylist([], schema=table.schema)
    content_type = codecs.ARROW_FILE if format == "arrow" else codecs.PANDAS_RECORDS
    return Response(codecs.encode(merged, content_type), media_type=content_type)
