"""`POST /pipelines/<name>`: inference over HTTP, answered in the request's format."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from control.errors import PayloadTooLarge
from control.server.state import get_state
from engine import codecs

router = APIRouter()


@router.post("/pipelines/{name}")
async def infer(name: str, request: Request, workspace: str = "default",
                timeout: float | None = None) -> Response:
    """Send rows (pandas-records JSON or Arrow) through a deployed pipeline."""
    state = get_state(request)
    declared = int(request.headers.get("content-length") or 0)
    limit = state.settings.max_payload_bytes
    if declared > limit:
        raise PayloadTooLarge(f"request body is {declared} bytes; the limit is {limit} "
                              "(WEIR_MAX_PAYLOAD_BYTES): split the rows into several requests")
    body = await request.body()
    if len(body) > limit:
        raise PayloadTooLarge(f"request body is over {limit} bytes: split the rows")
    state.gateway.refuse_if_overloaded(workspace, name, timeout)
    content_type = codecs.normalize_content_type(request.headers.get("content-type"),
                                                 default=codecs.PANDAS_RECORDS)
    batch = codecs.decode(body, content_type)
    result = await state.gateway.infer(workspace, name, batch, timeout)
    return Response(codecs.encode(result, content_type), media_type=content_type)
