"""A second weir server for tests that need settings of their own."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from control.sdk.client import Client
from control.settings import Settings
from control.stack import down, up


@contextmanager
def own_server(
    stack: dict[str, Any], home: Path, env: dict[str, str]
) -> Iterator[tuple[dict[str, Any], Client]]:
    """`weir up` in `home` (its own Redis and server, the session's broker) with `env`
    (WEIR_* settings, read by the server and the workers it starts) in its environment."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        settings = Settings(home=home, kafka_bootstrap=stack["kafka_bootstrap"])
        record = up(settings, detach=True, say=lambda _: None)
    try:
        yield record, Client(settings=Settings.discover(home=home))
    finally:
        down(settings, say=lambda _: None)
