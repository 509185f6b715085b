"""control/__init__.py loads the SDK lazily; SDK objects import the session, not the Client."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _loaded_after(statement: str, modules: tuple[str, ...]) -> list[str]:
    """The `modules` a fresh interpreter has loaded after running `statement`."""
    code = f"import sys\n{statement}\nprint(','.join(m for m in {modules!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return [m for m in out.stdout.strip().split(",") if m]


SDK = ("httpx", "rich", "control.sdk.client", "control.sdk.pipeline")


def test_workers_and_the_server_do_not_load_the_sdk() -> None:
    statement = "import control, control.errors, control.worker_main, control.server.app"
    assert _loaded_after(statement, SDK) == []


def test_the_sdks_names_still_come_from_control() -> None:
    assert _loaded_after(
        "from control import Client, Pipeline, DeploymentConfigBuilder", SDK
    ) == list(SDK)
    import control

    with pytest.raises(AttributeError, match="no attribute 'Clients'"):
        control.Clients  # noqa: B018


def test_sdk_objects_do_not_import_the_client() -> None:
    modules = ("model", "pipeline", "steps", "tags", "versions", "logs")
    statement = "; ".join(f"import control.sdk.{m}" for m in modules)
    assert _loaded_after(statement, ("control.sdk.client",)) == []
