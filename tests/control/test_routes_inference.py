"""control/server/routes/inference.py in process: the plain-ASGI lane answers like the
FastAPI route, inside the token check, the body limit and the request counting, and
leaves every request it does not read itself to FastAPI. Answers with rows need a broker:
tests/integration (test_end_to_end, test_coalescing, test_backpressure) cover those."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from starlette.types import Receive, Scope, Send

from control.embedded import Service
from control.server.routes.inference import InferenceLane
from tests.control._asgi import InProcess, in_process

LIMIT = 1024
ROWS = b'[{"tensor": [1.0, 2.0]}]'


@pytest.fixture
async def server(redis_service: Service, tmp_path: Path) -> AsyncIterator[InProcess]:
    async for served in in_process(redis_service, tmp_path / "home", max_payload_bytes=LIMIT):
        served.state.registry.get_or_create_pipeline("default", "p")  # never deployed
        yield served


def counted(server: InProcess, status: int) -> int:
    return int(server.app.state.http_metrics.requests[("POST", "/pipelines/{name}", "p", status)])


@pytest.mark.parametrize(
    ("query", "status", "error", "says"),
    [
        ("", 409, "NotDeployedError", "deploy"),
        ("?timeout=2", 409, "NotDeployedError", "deploy"),
        ("?timeout=.5&workspace=default", 409, "NotDeployedError", "deploy"),
        ("?timeout=1e-1", 409, "NotDeployedError", "deploy"),  # FastAPI's to read: alike
        ("?timeout=abc", 422, "InvalidRequest", "timeout"),
        ("?timeout=", 422, "InvalidRequest", "timeout"),
        ("?timeout=-1x", 422, "InvalidRequest", "timeout"),
        ("?timeout=%D9%A3", 422, "InvalidRequest", "timeout"),  # an Arabic-Indic 3
    ],
)
async def test_an_answer_says_what_was_wrong(
    server: InProcess, query: str, status: int, error: str, says: str
) -> None:
    answer = await server.http.post(f"/pipelines/p{query}", content=ROWS)
    assert answer.status_code == status
    assert answer.json()["error"] == error
    assert says in answer.json()["message"]
    assert counted(server, status) == 1  # counted under the route's template and pipeline


async def test_no_such_pipeline_or_workspace_is_404(server: InProcess) -> None:
    assert (await server.http.post("/pipelines/nope", content=ROWS)).status_code == 404
    other = await server.http.post("/pipelines/p?workspace=elsewhere", content=ROWS)
    assert other.status_code == 404


async def test_without_the_token_it_is_401(server: InProcess) -> None:
    answer = await server.http.post(
        "/pipelines/p", content=ROWS, headers={"Authorization": "Bearer wrong"}
    )
    assert answer.status_code == 401


async def test_a_body_over_the_limit_is_413_declared_or_not(server: InProcess) -> None:
    declared = await server.http.post("/pipelines/p", content=b"x" * (LIMIT + 1))
    assert declared.status_code == 413

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
        for _ in range(4):
            yield b"x" * (LIMIT // 2)

    streamed = await server.http.post("/pipelines/p", content=chunks())
    assert streamed.status_code == 413
    assert "WEIR_MAX_PAYLOAD_BYTES" in streamed.json()["message"]


class Recorder:
    """An inner app that records what reaches it."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.paths.append(f"{scope['method']} {scope['path']}?{scope['query_string'].decode()}")


@pytest.mark.parametrize(
    ("method", "path", "query"),
    [
        ("GET", "/pipelines/p", ""),  # the pipeline's description
        ("POST", "/pipelines/p/deploy", ""),
        ("POST", "/pipelines", ""),
        ("POST", "/pipelines/p", "timeout=inf"),
        ("POST", "/pipelines/p", "timeout=nan"),
    ],
)
async def test_what_the_lane_does_not_read_goes_on_to_fastapi(
    method: str, path: str, query: str
) -> None:
    inner = Recorder()
    scope: dict[str, Any] = {
        "type": "http",
        "method": method,
        "path": path,
        "query_string": query.encode(),
        "headers": [],
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: Any) -> None:
        raise AssertionError("only the inner app answers")

    await InferenceLane(inner)(scope, receive, send)
    assert inner.paths == [f"{method} {path}?{query}"]
    assert "route" not in scope


def _scope(app: Any, query: bytes = b"timeout=1") -> dict[str, Any]:
    return {
        "type": "http",
        "method": "POST",
        "path": "/pipelines/p",
        "query_string": query,
        "headers": [(b"content-type", b"application/json")],
        "app": app,
    }


async def test_the_lane_answers_a_plain_inference_itself(server: InProcess) -> None:
    inner, sent, scope = Recorder(), [], _scope(server.app)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": ROWS}

    async def send(message: Any) -> None:
        sent.append(message)

    await InferenceLane(inner)(scope, receive, send)
    assert inner.paths == []
    assert sent[0]["status"] == 409
    assert scope["route"].path == "/pipelines/{name}"
    assert scope["path_params"] == {"name": "p"}


async def test_a_client_gone_before_its_body_is_not_answered(server: InProcess) -> None:
    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        sent.append(message)

    await InferenceLane(Recorder())(_scope(server.app), receive, send)
    assert sent == []
