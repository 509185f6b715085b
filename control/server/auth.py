"""The bearer-token check every request passes, but the health checks and the console's page.

It runs before routing, so a caller without the token learns nothing from the
server but 401: not which routes exist, nor what a route's body must be.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from control.errors import AuthError
from control.server.errors import error_response
from control.server.state import ServerState

OPEN_PATHS = frozenset({"/healthz", "/readyz", "/v2/health/live", "/v2/health/ready", "/"})
"""Served without the token: the health checks, and the console's page (a login form until
it has a token; everything it shows comes from token-protected routes)."""
OPEN_PREFIXES = ("/static/",)
"""The console's scripts, styles and vendored charting library."""


class RequireToken:
    """ASGI middleware answering 401 to a request without `Authorization: Bearer <token>`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if (
            scope["type"] != "http"
            or path in OPEN_PATHS
            or path.startswith(OPEN_PREFIXES)
            or _authorized(scope)
        ):
            await self.app(scope, receive, send)
            return
        response = error_response(
            AuthError(
                "missing or wrong bearer token: send 'Authorization: Bearer <token>' (the token is "
                "in stack.json under WEIR_HOME; `weir token rotate` issues a new one)"
            ),
            path,
        )
        response.headers["www-authenticate"] = "Bearer"
        await response(scope, receive, send)


def _authorized(scope: Scope) -> bool:
    header = next((value for name, value in scope["headers"] if name == b"authorization"), b"")
    scheme, _, token = header.decode("latin-1").partition(" ")
    state: ServerState = scope["app"].state.weir
    return scheme.lower() == "bearer" and state.token.matches(token)
