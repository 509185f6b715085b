"""Redis down, then back: deployed pipelines serve on, the API says 503 clearly, all resumes.

A server of its own on the session's broker, with a Redis of this test's own (so it can
be stopped and started again on the same port and data folder: its append-only file
keeps the registry). A one-step pipeline is deployed and answered over HTTP once. With
Redis stopped, records sent to its input topic are all answered, HTTP inference on it
still answers, `/healthz` stays 200 and `/readyz` says not ready, and what needs the
registry (listing pipelines, a status) answers 503 naming Redis and what to do, in
time (the client's timeout bounds it: no hang). Each worker says once that its
heartbeats fail, and none is restarted. With Redis back the pipeline is Running again,
the same processes serve, and a new deploy works.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from control.embedded import Service, start_redis
from control.errors import RegistryUnavailable
from control.sdk.client import Client
from control.sdk.pipeline import Pipeline
from tests.integration._own_server import OwnServer, own_server
from tests.integration._streams import Reader, Sent, produce, worker_warnings

pytestmark = pytest.mark.slow

PIPELINE = "redis-down"
SHORT_S = 15.0
"""The HTTP timeout of a request made while Redis is down: it must be answered sooner."""
DOWN_RECORDS = 60
DOWN_PER_SECOND = 5.0
"""Records sent while Redis is down, over longer than a heartbeat takes to go stale."""
BACK_WITHIN_S = 30.0
ROW = [{"tensor": [0.01] * 10}]


@dataclass
class OwnRedis:
    """A redis-server of the test's own, stopped and started again on one port and folder."""

    folder: Path
    service: Service

    def stop(self) -> None:
        self.service.stop()

    def start_again(self) -> None:
        self.service = start_redis(self.folder, port=self.service.port)


@pytest.fixture
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnRedis]:
    folder = tmp_path_factory.mktemp("own-redis")
    redis = OwnRedis(folder, start_redis(folder))
    yield redis
    redis.stop()


@pytest.fixture
def server(
    tmp_path_factory: pytest.TempPathFactory, kafka_service: Service, own_redis: OwnRedis
) -> Iterator[OwnServer]:
    with own_server(
        tmp_path_factory.mktemp("redis-down"), kafka_service, own_redis.service, 0
    ) as own:
        yield own


def test_pipelines_serve_on_while_redis_is_down_and_all_resumes(
    server: OwnServer, own_redis: OwnRedis, kafka_service: Service, diabetes_onnx: Path
) -> None:
    client = Client(server_url=server.url, token=server.token())
    model = client.upload_model("redis-down-model", diabetes_onnx).configure("onnx")
    pipeline = client.build_pipeline(PIPELINE).add_model_step(model)
    pipeline.deploy(quiet=True)
    topics = pipeline.topics()
    assert _infer(server, PIPELINE).status_code == 200  # the gateway looks its deployment up
    pids = _pids(pipeline)

    async def while_down() -> set[str]:
        reader = Reader(kafka_service.address, topics["output"], "down")
        await reader.start()
        try:
            await asyncio.to_thread(own_redis.stop)
            sent = Sent()
            producing = asyncio.create_task(
                produce(
                    kafka_service.address,
                    topics["input"],
                    "down",
                    DOWN_RECORDS,
                    per_second=DOWN_PER_SECOND,
                    sent=sent,
                )
            )
            await asyncio.to_thread(_api_says_redis_is_down, server, own_redis.service)
            await producing
            missing = await reader.wait_for(set(sent.where), timeout_s=60)
            # Still down: the answers above came with Redis away the whole time.
            assert (await asyncio.to_thread(server.request, "GET", "/readyz")).status_code == 503
            return missing
        finally:
            await reader.stop()

    missing = asyncio.run(while_down())
    assert not missing, (
        f"{len(missing)} records sent while Redis was down were never "
        f"answered; the workers said:\n{worker_warnings(str(server.home))}"
    )
    with pytest.raises(RegistryUnavailable, match="unreachable"):
        pipeline.status()

    own_redis.start_again()
    status = _poll_running(pipeline)
    assert status["status"] == "Running", status
    assert _pids(pipeline) == pids, "workers were restarted while Redis was down"
    assert client.get_pipeline(PIPELINE).name == PIPELINE  # the registry's data survived
    for log in (server.home / "run" / "logs").glob("worker-*.log"):
        said = [
            line
            for line in log.read_text(errors="replace").splitlines()
            if "heartbeats of worker" in line and " failed: " in line
        ]
        assert len(said) == 1, f"{log.name} said its heartbeats failed {len(said)} times"

    second = client.build_pipeline(f"{PIPELINE}-2").add_model_step(model)
    second.deploy(quiet=True)
    try:
        assert _infer(server, f"{PIPELINE}-2").status_code == 200
        assert _infer(server, PIPELINE).status_code == 200
    finally:
        second.undeploy()
        pipeline.undeploy()
    assert server.server_errors() == []


def _api_says_redis_is_down(server: OwnServer, redis: Service) -> None:
    """With Redis stopped: what needs it answers 503, clearly and in time; the rest works."""
    assert server.request("GET", "/healthz", timeout=SHORT_S).status_code == 200
    ready = server.request("GET", "/readyz", timeout=SHORT_S)
    assert ready.status_code == 503 and ready.json()["reason"] == "Redis is unreachable"
    listed = server.request("GET", "/pipelines", timeout=SHORT_S)
    assert listed.status_code == 503, listed.text
    body = listed.json()
    assert body["error"] == "RegistryUnavailable"
    assert f"Redis at {redis.address} is unreachable" in body["message"]
    assert "weir up" in body["message"]
    answered = _infer(server, PIPELINE)
    assert answered.status_code == 200, answered.text
    unknown = _infer(server, "never-deployed")
    assert unknown.status_code == 503, unknown.text


def _infer(server: OwnServer, name: str) -> httpx.Response:
    return server.request("POST", f"/pipelines/{name}", json=ROW, timeout=SHORT_S)


def _pids(pipeline: Pipeline) -> dict[str, int]:
    return {e["name"]: e["pid"] for e in pipeline.status()["engines"]}


def _poll_running(pipeline: Pipeline) -> dict[str, object]:
    """The pipeline's status once Running again (or the last one after BACK_WITHIN_S)."""
    deadline = time.monotonic() + BACK_WITHIN_S
    status: dict[str, object] = {}
    while time.monotonic() < deadline:
        try:
            status = pipeline.status()
        except RegistryUnavailable as exc:  # the client reconnects on its next call
            status = {"status": str(exc)}
        if status.get("status") == "Running":
            break
        time.sleep(0.25)
    return status
