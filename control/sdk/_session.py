"""`Session`: what every SDK object shares: the server's API, the current workspace, settings.

`Client` makes one; models, pipelines, versions and tags hold it (never the `Client`), and
every call they make goes through it with the workspace it names.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from control.sdk._http import Api
from control.settings import Settings


class Session:
    """One server connection and the workspace calls are made in."""

    def __init__(self, api: Api, settings: Settings, workspace: str) -> None:
        self.api = api
        self.settings = settings
        self.workspace = workspace
        """Changed by `Client.set_current_workspace`; objects made earlier follow it."""

    def params(self, **extra: Any) -> dict[str, Any]:
        """Query parameters naming the current workspace, plus `extra` (None values dropped)."""
        return {"workspace": self.workspace, **{k: v for k, v in extra.items() if v is not None}}

    def request(
        self, method: str, path: str, *, params: dict[str, Any] | None = None, **kwargs: Any
    ) -> httpx.Response:
        """A request in the current workspace; a server error is raised as its weir class."""
        return self.api.request(method, path, params=self.params(**(params or {})), **kwargs)

    def json(
        self, method: str, path: str, *, params: dict[str, Any] | None = None, **kwargs: Any
    ) -> Any:
        return self.request(method, path, params=params, **kwargs).json()

    @contextmanager
    def stream(
        self, method: str, path: str, *, params: dict[str, Any] | None = None
    ) -> Iterator[httpx.Response]:
        with self.api.stream(method, path, params=self.params(**(params or {}))) as response:
            yield response

    @property
    def server_url(self) -> str:
        return self.api.server_url
