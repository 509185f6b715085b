"""`POST /pipelines/<name>`: inference over HTTP, answered in the request's format."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from control.server.state import get_state
from engine import codecs

router = APIRouter()


@router.post("/pipelines/{name}")
async def infer(name: str, request: Request, workspace: str = "default",
                timeout: float | None = None) -> Response:
    """Send rows (pandas-records JSON or Arrow) through a deployed pipeline."""
    state = get_state(request)
    body = await request.body()  # at most WEIR_MAX_PAYLOAD_BYTES: the body limit sees to it
    content_type = codecs.normalize_content_type(request.headers.get("content-type"),
                                                 default=codecs.PANDAS_RECORDS)
    batch = codecs.decode(body, content_type)
    result = await state.gateway.infer(workspace, name, batch, timeout)
    return Response(codecs.encode(result, content_type), media_type=content_type)
