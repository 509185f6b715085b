"""`POST /pipelines/<name>`: inference over HTTP, answered in the request's format.

Most of the server's traffic is this one route, and FastAPI's request machinery (the
`Request` object, parameter parsing and validation, the exception middleware) cost each
request more server CPU than the route's own work. So `InferenceLane` answers the common
case as plain ASGI, inside weir's middlewares (counting, token, body limit): a POST to
`/pipelines/<name>` whose query string holds nothing FastAPI would have to validate. Any
other request, an odd `timeout` included, goes on to the FastAPI route below, which also
gives the route its place in the OpenAPI schema. Both answer through `answer`.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request, Response
from fastapi.routing import APIRoute
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from control.registry import DEFAULT_WORKSPACE
from control.server.errors import error_response
from control.server.state import ServerState, get_state
from engine import codecs
from engine.errors import WeirError
from streams.trace import trace_headers

router = APIRouter()


async def answer(
    state: ServerState,
    name: str,
    workspace: str,
    timeout: float | None,
    headers: Mapping[str, str],
    body: Callable[[], Awaitable[bytes]],
) -> tuple[bytes, str]:
    """The encoded answer and its content type; WeirError for what the caller got wrong."""
    state.gateway.refuse_if_overloaded(workspace, name, timeout)  # before reading the body
    payload = await body()  # at most WEIR_MAX_PAYLOAD_BYTES: the body limit sees to it
    content_type = codecs.normalize_content_type(
        headers.get("content-type"), default=codecs.PANDAS_RECORDS
    )
    result = await state.gateway.infer(  # 404 for no such pipeline, 409 if not deployed
        workspace,
        name,
        codecs.decode(payload, content_type),  # checked here: a bad body is the caller's 400
        timeout,
        trace=trace_headers(headers),
        record=payload if content_type == codecs.ARROW_STREAM else None,  # sent as it came
    )
    return codecs.encode(result, content_type), content_type


@router.post("/pipelines/{name}")
async def infer(
    name: str, request: Request, workspace: str = DEFAULT_WORKSPACE, timeout: float | None = None
) -> Response:
    """Send rows through a deployed pipeline; the answer comes in the request's format.

    Body: pandas-records JSON (`[{"tensor": [...]}, ...]`, content type `application/json`)
    or an Arrow IPC file or stream (`application/vnd.apache.arrow.file` / `.stream`).
    """
    content, content_type = await answer(
        get_state(request), name, workspace, timeout, request.headers, request.body
    )
    return Response(content, media_type=content_type)


_PATH = re.compile(r"/pipelines/([^/]+)")
_PLAIN_SECONDS = re.compile(r"[0-9]+(\.[0-9]*)?|\.[0-9]+")  # ASCII: float() reads other digits too
"""A `timeout` the lane reads itself; anything else (`1e-3`, `inf`, `abc`, empty) is left to
FastAPI's validation, so both ways answer alike."""


class InferenceLane:
    """ASGI middleware answering `POST /pipelines/<name>` without FastAPI's machinery.

    It sets the scope's `route` and `path_params` as routing would, so the request is
    counted under the route's template and its pipeline (routes.metrics).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.route = next(
            r for r in router.routes if isinstance(r, APIRoute) and r.endpoint is infer
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = _PATH.fullmatch(scope["path"]) if scope["type"] == "http" else None
        query = _query(scope) if match is not None and scope["method"] == "POST" else None
        if match is None or query is None:
            await self.app(scope, receive, send)
            return
        workspace, timeout = query
        scope["route"], scope["path_params"] = self.route, {"name": match[1]}

        async def body() -> bytes:
            chunks = []
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise _Disconnected
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    return b"".join(chunks)

        state: ServerState = scope["app"].state.weir
        headers = Headers(scope=scope)
        try:
            content, content_type = await answer(state, match[1], workspace, timeout, headers, body)
            response = Response(content, media_type=content_type)
        except _Disconnected:
            return  # nobody to answer
        except WeirError as exc:
            response = error_response(exc, scope["path"])
        await response(scope, receive, send)


class _Disconnected(Exception):
    """The client went away before its body was read."""


def _query(scope: Scope) -> tuple[str, float | None] | None:
    """`workspace` and `timeout` from the query string (the last of each, as Starlette
    reads them), or None where FastAPI must validate it."""
    values = dict(parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True))
    timeout = values.get("timeout")
    if timeout is not None and not _PLAIN_SECONDS.fullmatch(timeout):
        return None
    return values.get("workspace", DEFAULT_WORKSPACE), float(timeout) if timeout else None
