"""The SDK's HTTP client: bearer token, JSON bodies, and server errors turned back into classes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from control import errors as control_errors
from control.error_status import BY_NAME
from control.settings import Settings
from engine.errors import WeirError


def _error(status: int, body: Any, retry_after: str | None = None) -> WeirError:
    """The error the server named, with its message; an `Overloaded` one also carries the
    answer's Retry-After as `retry_after_s`."""
    name = body.get("error") if isinstance(body, dict) else None
    message = body.get("message") if isinstance(body, dict) else None
    if message is None:
        message = f"server answered HTTP {status}: {body}"
    cls = BY_NAME.get(name or "", WeirError)
    exc = cls.__new__(cls)
    Exception.__init__(exc, message)
    exc.status_code = status  # type: ignore[attr-defined]
    if isinstance(exc, control_errors.Overloaded):
        seconds = retry_after or ""
        exc.retry_after_s = float(seconds) if seconds.isdigit() else 1.0
    return exc


def _raise_for_status(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        body = response.json()
    except ValueError:
        body = response.text
    raise _error(response.status_code, body, response.headers.get("Retry-After"))


class Api:
    """Talks to one weir server with its token."""

    def __init__(self, server_url: str, token: str, timeout_s: float = 120.0) -> None:
        self.server_url = server_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.server_url,
            timeout=timeout_s,
            headers={"Authorization": f"Bearer {token}"},
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> Api:
        if not settings.server_url or not settings.token:
            raise control_errors.StackError(
                f"no weir server found: run `weir up` (looked for {settings.stack_file}), or pass "
                "server_url and token / set WEIR_SERVER_URL and WEIR_TOKEN"
            )
        return cls(settings.server_url, settings.token)

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise self._not_answering(exc) from exc
        _raise_for_status(response)
        return response

    @contextmanager
    def stream(self, method: str, path: str, **kwargs: Any) -> Iterator[httpx.Response]:
        """A streamed response (for exports); errors are raised as for `request`, a server
        that goes away while the body is read too."""
        try:
            with self._http.stream(method, path, **kwargs) as response:
                if response.status_code >= 400:
                    response.read()
                    _raise_for_status(response)
                yield response
        except httpx.TransportError as exc:
            raise self._not_answering(exc) from exc

    def _not_answering(self, exc: httpx.TransportError) -> control_errors.StackError:
        """A refused or dropped connection (the server is down, or died mid-request)."""
        detail = str(exc).rstrip(".") or type(exc).__name__
        return control_errors.StackError(
            f"the weir server at {self.server_url} is not answering ({detail}); is it running? "
            "Start it with `weir up`"
        )

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.request(method, path, **kwargs).json()

    def close(self) -> None:
        self._http.close()
