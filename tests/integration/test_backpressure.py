"""Backpressure on the real stack: a server with room for two requests refuses the rest with 503.

A second server (its own Redis, the session's broker) is started with
WEIR_MAX_IN_FLIGHT=2 and a pipeline whose one step takes half a second; a
flood of concurrent requests gets 200s for what fits and 503 + Retry-After for
the rest, and the server answers normally once the flood is over.
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

SLOW_STEP = """
import time
def process_data(input_data):
    time.sleep(0.5)
    return {"out": input_data["x"] * 2.0}
"""
FLOOD = 16


@pytest.fixture(scope="module")
def small_server(stack: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[tuple[dict[str, Any], Client]]:
    home = tmp_path_factory.mktemp("weir-small")
    with own_server(stack, home, {"WEIR_MAX_IN_FLIGHT": "2"}) as server:
        yield server


@pytest.fixture(scope="module")
def slow_pipeline(small_server: tuple[dict[str, Any], Client], tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[Pipeline]:
    _, client = small_server
    step = Path(tmp_path_factory.mktemp("slow")) / "slow.py"
    step.write_text(SLOW_STEP)
    model = client.upload_model("slow", step).configure("python")
    pipeline = client.build_pipeline("bp-slow").add_model_step(model).deploy(quiet=True)
    yield pipeline
    pipeline.undeploy()


async def _flood(url: str, token: str, n: int) -> list[httpx.Response]:
    body = codecs.encode(codecs.batch_from_arrays({"x": np.ones(1)}),
                         codecs.ARROW_FILE)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": codecs.ARROW_FILE}
    async with httpx.AsyncClient(timeout=60) as http:
        return list(await asyncio.gather(*[http.post(url, content=body, headers=headers)
                                           for _ in range(n)]))


def test_a_flood_beyond_max_in_flight_gets_503_with_retry_after(
        small_server: tuple[dict[str, Any], Client], slow_pipeline: Pipeline) -> None:
    record, _ = small_server
    responses = asyncio.run(_flood(slow_pipeline.url(), record["token"], FLOOD))
    codes = [r.status_code for r in responses]
    assert set(codes) <= {200, 503}, codes
    refused = [r for r in responses if r.status_code == 503]
    assert 1 <= codes.count(200) <= FLOOD - 1 and refused, codes
    for response in refused:
        assert response.headers["retry-after"] == "1"
        assert response.json()["error"] == "Overloaded"
    for response in responses:
        if response.status_code == 200:
            assert codecs.decode(response.content, codecs.ARROW_FILE).column(
                "out.out").to_pylist() == [2.0]
    # Nothing stays in flight: the next requests are served.
    assert [r.status_code for r in asyncio.run(_flood(slow_pipeline.url(), record["token"], 2))
            ] == [200, 200]
