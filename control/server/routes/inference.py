"""`POST /pipelines/<name>`: inference over HTTP, answered in the request's format."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from control.server.state import get_state
from engine import codecs
from streams.trace import trace_headers

router = APIRouter()


@router.post("/pipelines/{name}")
async def infer(
    name: str, request: Request, workspace: str = "default", timeout: float | None = None
) -> Response:
    """Send rows through a deployed pipeline; the answer comes in the request's format.

    Body: pandas-records JSON (`[{"tensor": [...]}, ...]`, content type `application/json`)
    or an Arrow IPC file or stream (`application/vnd.apache.arrow.file` / `.stream`).
    """
    state = get_state(request)
    state.gateway.refuse_if_overloaded(workspace, name, timeout)  # before reading the body
    body = await request.body()  # at most WEIR_MAX_PAYLOAD_BYTES: the body limit sees to it
    content_type = codecs.normalize_content_type(
        request.headers.get("content-type"), default=codecs.PANDAS_RECORDS
    )
    result = await state.gateway.infer(  # 404 for no such pipeline, 409 if not deployed
        workspace,
        name,
        codecs.decode(body, content_type),
        timeout,
        trace=trace_headers(request.headers),
    )
    return Response(codecs.encode(result, content_type), media_type=content_type)
