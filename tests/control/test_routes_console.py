"""control/server/routes/console.py in process: the console's pipeline list shows each
deployment's state and workers as `status()` does."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from control.embedded import Service
from control.records import Deployment
from streams.plan import WorkerRole
from streams.status import WorkerStatus
from tests.control._asgi import InProcess, in_process

WS = "default"


@pytest.fixture
async def server(redis_service: Service, tmp_path: Path) -> AsyncIterator[InProcess]:
    async for served in in_process(redis_service, tmp_path / "home"):
        yield served


def beat(worker_id: str, role: WorkerRole) -> WorkerStatus:
    return WorkerStatus(
        worker_id=worker_id,
        workspace=WS,
        pipeline="p",
        version="v1",
        replica=0,
        role=role,
        pid=1,
        host="h0",
        status="Running",
        time=datetime.now(UTC),
    )


async def test_the_list_shows_each_pipelines_state_engines_and_sidekicks(server: InProcess) -> None:
    registry = server.state.registry
    registry.get_or_create_pipeline(WS, "idle")
    registry.get_or_create_pipeline(WS, "p")
    registry.set_deployment(
        Deployment(workspace=WS, pipeline="p", version="v1", worker_ids=["w0", "w0-side"])
    )
    registry.beat(beat("w0", "main"))
    registry.beat(beat("w0-side", "sidekick"))
    rows = {r["name"]: r for r in (await server.http.get("/console/pipelines")).json()}
    assert (rows["idle"]["status"], rows["idle"]["engines"]) == ("Not deployed", [])
    assert rows["p"]["status"] == "Running" and rows["p"]["deployed_version"] == "v1"
    assert [(e["name"], e["role"], e["remote"]) for e in rows["p"]["engines"]] == [
        ("w0", "main", False)
    ]
    assert [e["name"] for e in rows["p"]["sidekicks"]] == ["w0-side"]
