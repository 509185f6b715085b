"""The request-body limit: a body over it is refused with 413 before it is read whole.

A declared `Content-Length` over the limit is refused before any of the body is
read; a body sent without one (chunked) is counted as it arrives and refused at
the first chunk that crosses the limit. Uploads (model files, bundles) have a
limit of their own, chosen by route.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from control.errors import PayloadTooLarge
from control.server.errors import error_response


class BodyLimit:
    """ASGI middleware refusing request bodies over `limit` bytes (`upload_limit` on `uploads`)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        limit: int,
        upload_limit: int,
        uploads: Sequence[tuple[str, re.Pattern[str]]] = (),
    ) -> None:
        self.app = app
        self.limit = limit
        self.upload_limit = upload_limit
        self.uploads = uploads
        """(method, path pattern) of the routes that take uploads."""

    def _limit_for(self, scope: Scope) -> tuple[int, str]:
        for method, pattern in self.uploads:
            if scope["method"] == method and pattern.match(scope["path"]):
                return self.upload_limit, "WEIR_MAX_UPLOAD_BYTES"
        return self.limit, "WEIR_MAX_PAYLOAD_BYTES"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, setting = self._limit_for(scope)
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _refuse(
                scope,
                receive,
                send,
                PayloadTooLarge(
                    f"request body is {declared} bytes; the limit is {limit} ({setting}): "
                    "send less per request"
                ),
            )
            return
        received = 0
        over = False

        async def counted() -> Message:
            nonlocal received, over
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    over = True
                    raise PayloadTooLarge(
                        f"request body is over the {limit}-byte limit ({setting})"
                    )
            return message

        async def unless_over(message: Message) -> None:
            if not over:  # the app's answer to the aborted read is replaced by the 413
                await send(message)

        try:
            await self.app(scope, counted, unless_over)
        except PayloadTooLarge:
            if not over:
                raise
        if over:
            await _refuse(
                scope,
                receive,
                send,
                PayloadTooLarge(
                    f"request body is over the {limit}-byte limit ({setting}): send less per request"
                ),
            )


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _refuse(scope: Scope, receive: Receive, send: Send, exc: PayloadTooLarge) -> None:
    response = error_response(exc)
    response.headers["connection"] = "close"  # the unread rest of the body is not wanted
    await response(scope, receive, send)
