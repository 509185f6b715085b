"""Backpressure on the real stack: the gateway admits exactly `max_in_flight` requests and
refuses the rest with 503 at once; and it refuses a request its pipeline, at the rate it
was measured to answer, could not answer within the request's deadline.

A second server (its own Redis, the session's broker) is started with
WEIR_MAX_IN_FLIGHT=3 and a pipeline whose one step holds every record until the test
opens a gate (a file): a flood of concurrent requests gets its 503s while the admitted
requests are still held, so each refusal came back before any answer could.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from control.sdk.client import Client
from control.sdk.pipeline import Pipeline
from engine import codecs
from tests.integration._servers import own_server

pytestmark = pytest.mark.slow

LIMIT = 3
FLOOD = 16
GATED_STEP = """
import os
import time
def process_data(input_data):
    while not os.path.exists({gate!r}):
        time.sleep(0.01)
    return {{"out": input_data["x"] * 2.0}}
"""


@pytest.fixture(scope="module")
def small_server(
    stack: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[dict[str, Any], Client]]:
    home = tmp_path_factory.mktemp("weir-small")
    with own_server(stack, home, {"WEIR_MAX_IN_FLIGHT": str(LIMIT)}) as server:
        yield server


@pytest.fixture(scope="module")
def gate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gate") / "open"


@pytest.fixture(scope="module")
def gated_pipeline(
    small_server: tuple[dict[str, Any], Client],
    gate: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Pipeline]:
    _, client = small_server
    step = Path(tmp_path_factory.mktemp("gated")) / "gated.py"
    step.write_text(GATED_STEP.format(gate=str(gate)))
    model = client.upload_model("gated", step).configure("python")
    gate.touch()  # open while deploying
    pipeline = client.build_pipeline("bp-gated").add_model_step(model).deploy(quiet=True)
    yield pipeline
    gate.touch()
    pipeline.undeploy()


def _body() -> bytes:
    return codecs.encode(codecs.batch_from_arrays({"x": np.ones(1)}), codecs.ARROW_FILE)


def _headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": codecs.ARROW_FILE}


async def _flood_then_open(url: str, token: str, gate: Path) -> list[httpx.Response]:
    """FLOOD concurrent requests; the gate opens once FLOOD - LIMIT of them were refused.
    Returns the responses in the order they came back."""
    came_back: list[httpx.Response] = []
    async with httpx.AsyncClient(timeout=60) as http:

        async def one() -> None:
            response = await http.post(
                url, params={"timeout": "20"}, content=_body(), headers=_headers(token)
            )
            came_back.append(response)
            if sum(r.status_code == 503 for r in came_back) == FLOOD - LIMIT:
                gate.touch()

        await asyncio.gather(*(one() for _ in range(FLOOD)))
    return came_back


def test_a_flood_gets_exactly_max_in_flight_answers_and_the_rest_503_at_once(
    small_server: tuple[dict[str, Any], Client], gated_pipeline: Pipeline, gate: Path
) -> None:
    record, _ = small_server
    gate.unlink()
    responses = asyncio.run(_flood_then_open(gated_pipeline.url(), record["token"], gate))
    codes = [r.status_code for r in responses]
    # Every refusal came back while the admitted requests were still held at the gate.
    assert codes == [503] * (FLOOD - LIMIT) + [200] * LIMIT, codes
    for response in responses[: FLOOD - LIMIT]:
        assert response.headers["retry-after"] == "1"
        assert response.json()["error"] == "Overloaded"
        assert "WEIR_MAX_IN_FLIGHT" in response.json()["message"]
    for response in responses[FLOOD - LIMIT :]:
        assert codecs.decode(response.content, codecs.ARROW_FILE).column("out.out").to_pylist() == [
            2.0
        ]


def test_a_request_the_pipeline_cannot_answer_within_its_deadline_is_refused_at_once(
    small_server: tuple[dict[str, Any], Client], gated_pipeline: Pipeline, gate: Path
) -> None:
    record, _ = small_server
    gate.touch()
    url, headers = gated_pipeline.url(), _headers(record["token"])
    with httpx.Client(timeout=60) as http:
        for _ in range(5):  # the gateway measures how fast the pipeline answers
            assert http.post(url, content=_body(), headers=headers).status_code == 200
        # No pipeline answers within a microsecond: refused without being sent.
        refused = http.post(url, params={"timeout": "0.000001"}, content=_body(), headers=headers)
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        assert "past its deadline" in refused.json()["message"]
        # An ample deadline is served.
        assert (
            http.post(url, params={"timeout": "20"}, content=_body(), headers=headers).status_code
            == 200
        )
