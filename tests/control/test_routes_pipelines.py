"""control/server/routes/pipelines.py in process: a version from the steps the SDK sends
(control/pipeline_specs.py), and the status route's shape (control/pipeline_status.py)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from control.embedded import Service
from control.pipeline_status import PipelineStatus
from control.records import Deployment, ModelVersion
from engine.definition import TensorSpec
from engine.expressions import parse
from streams.status import ModelStatus, WorkerStatus
from tests.control._asgi import InProcess, in_process

WS = "default"


@pytest.fixture
async def server(redis_service: Service, tmp_path: Path) -> AsyncIterator[InProcess]:
    async for served in in_process(redis_service, tmp_path / "home"):
        for name in ("a", "b"):
            served.state.registry.add_model(
                ModelVersion(
                    name=name,
                    version=str(uuid.uuid4()),
                    sha=name * 64,
                    runtime="onnx",
                    workspace=WS,
                    file_name=f"{name}.onnx",
                    size=1,
                    outputs=[TensorSpec(name="variable", dtype="float32", shape=[None, 1])],
                )
            )
        served.state.registry.get_or_create_pipeline(WS, "p")
        yield served


def model_step(name: str, **body: object) -> dict[str, object]:
    return {"kind": "model", "model": {"name": name}, **body}


async def test_a_version_names_its_models_in_full(server: InProcess) -> None:
    steps = [
        model_step("a"),
        {
            "kind": "random_split",
            "hash_key": "customer",
            "arms": [
                {"weight": 1, "models": [{"name": "a"}]},
                {"weight": 3, "models": [{"name": "b"}]},
            ],
        },
    ]
    answer = await server.http.post("/pipelines/p/versions", json={"steps": steps})
    assert answer.status_code == 200, answer.text
    definition = answer.json()["definition"]
    b = server.state.registry.get_model(WS, "b")
    assert definition["steps"][1]["arms"][1]["models"][0]["sha"] == b.sha == "b" * 64
    assert answer.json()["steps"] == [
        s.summary() for s in server.state.registry.get_version(WS, "p").definition.steps
    ]


@pytest.mark.parametrize(
    ("steps", "validations", "status", "message"),
    [
        ([model_step("nope")], [], 404, "model 'nope' not found: upload it first"),
        (
            [{"kind": "random_split", "arms": [{"weight": 0, "models": [{"name": "a"}]}]}],
            [],
            400,
            "split weights must be positive numbers, got [0.0]",
        ),
        ([model_step("a", outputs={"varaible": "price"})], [], 400, "['varaible']"),
        (
            [model_step("a")],
            [{"name": "high", "expression": parse("b.outputs[0][0] < 1").to_json()}],
            400,
            "refers to ['b'], which the pipeline does not run",
        ),
    ],
)
async def test_a_version_that_cannot_run_is_refused_before_it_is_stored(
    server: InProcess, steps: list[object], validations: list[object], status: int, message: str
) -> None:
    answer = await server.http.post(
        "/pipelines/p/versions", json={"steps": steps, "validations": validations}
    )
    assert answer.status_code == status, answer.text
    assert message in answer.json()["message"]
    assert server.state.registry.versions(WS, "p") == []


async def test_the_status_route_answers_the_guides_shape(server: InProcess) -> None:
    answer = await server.http.get("/pipelines/p/status")
    assert answer.json() == {"status": "Pipeline p is not deployed"}
    registry = server.state.registry
    registry.set_deployment(Deployment(workspace=WS, pipeline="p", version="v1", worker_ids=["w0"]))
    registry.beat(
        WorkerStatus(
            worker_id="w0",
            workspace=WS,
            pipeline="p",
            version="v1",
            replica=0,
            pid=1,
            host="h0",
            status="Running",
            time=datetime.now(UTC),
            models=[ModelStatus(name="a", version="x", sha="a" * 64, status="Running")],
        )
    )
    body = (await server.http.get("/pipelines/p/status")).json()
    assert body["status"] == "Running" and body["version"] == "v1"
    assert body["engines"][0]["model_statuses"]["models"][0]["name"] == "a"
    assert body["engine_lbs"][0]["ip"] == "10.1.2.3"  # the server's http_host
    assert PipelineStatus.model_validate(body).runs("v1")


async def test_status_of_an_unknown_pipeline_is_not_found(server: InProcess) -> None:
    answer = await server.http.get("/pipelines/nope/status")
    assert answer.status_code == 404
