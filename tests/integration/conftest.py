"""The whole embedded stack (broker, Redis, server) started the way `weir up` does."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from control.sdk.client import Client
from control.settings import Settings
from control.stack import down, up


@pytest.fixture(scope="session")
def stack_home(broker: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp(f"weir-home-{broker}")


@pytest.fixture(scope="session")
def stack(broker: str, stack_home: Path) -> Iterator[dict[str, Any]]:
    """`weir up --detach` on free ports in a temporary WEIR_HOME, with the leg's broker;
    `weir down` after the session."""
    # Compact logs often, so tests see the background compaction at work.
    settings = Settings(home=stack_home, broker=broker, log_compact_every_s=2)
    record = up(settings, detach=True, say=lambda _: None)
    yield record
    down(settings, say=lambda _: None)


@pytest.fixture(scope="session")
def client(stack: dict[str, Any], stack_home: Path) -> Client:
    return Client(settings=Settings.discover(home=stack_home))
