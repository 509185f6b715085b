"""A deployment's memory limit on the real embedded stack: too small to start, and exceeded later."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from control import DeploymentConfigBuilder, WaitForDeployError
from control.sdk.client import Client
from control.sdk.pipeline import Pipeline
from tests.integration._streams import (
    Reader,
    Sent,
    first_value,
    is_error,
    numbered_row,
    produce,
)

pytestmark = pytest.mark.slow

FRAME = pd.DataFrame({"tensor": [np.full(10, n, dtype=np.float32).tolist() for n in range(3)]})

LIMIT = "400Mi"
"""A healthy worker of the pipeline below is ~170 MiB resident (measured)."""
GROW = -300.0
"""A row starting with this makes the step hold 300 MiB more: well over LIMIT in all."""
STEP = """
import time
from pathlib import Path
import numpy as np

MARKER = Path({marker!r})
held = []

def process_data(input_data):
    tensor = input_data["tensor"]
    if (tensor[:, 0] == {grow}).any() and not MARKER.exists():
        MARKER.write_text("grown once")  # the record is read again after the restart
        held.append(np.ones(300 * 2**20, dtype=np.uint8))  # written, so resident
        time.sleep(20)  # hold it while the record is in flight; the limit ends this first
    return {{"tensor": tensor}}
"""


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "grown"


def _pipeline(client: Client, name: str, step: Path, marker: Path) -> Pipeline:
    step.write_text(STEP.format(marker=str(marker), grow=GROW))
    model = client.upload_model(f"{name}-step", step).configure("python")
    return client.build_pipeline(name).add_model_step(model)


def test_a_worker_over_its_limit_while_starting_fails_the_deploy(
    client: Client, tmp_path: Path, marker: Path
) -> None:
    pipeline = _pipeline(client, "memory-tiny", tmp_path / "tiny_step.py", marker)
    config = DeploymentConfigBuilder().memory("32Mi").build()  # less than any Python worker
    with pytest.raises(WaitForDeployError, match="memory limit exceeded") as failed:
        pipeline.deploy(config, timeout_s=30, quiet=True)
    assert "its limit is 32 MiB" in str(failed.value)
    assert pipeline.status() == {"status": "Pipeline memory-tiny is not deployed"}


def _undone(pipeline: Pipeline, version: str, timeout_s: float = 10) -> dict[str, Any]:
    """The status once the server has undone a failed redeploy back to `version`.

    The SDK can see the new version's Error a moment before the server's swap
    task undoes it (it polls every 0.2 s).
    """
    deadline = time.monotonic() + timeout_s
    status = pipeline.status()
    while status.get("version") != version and time.monotonic() < deadline:
        time.sleep(0.1)
        status = pipeline.status()
    return status


def test_a_redeploy_over_its_limit_is_undone_and_the_old_version_serves_on(
    client: Client, tmp_path: Path, marker: Path
) -> None:
    pipeline = _pipeline(client, "memory-swap", tmp_path / "swap_step.py", marker)
    pipeline.deploy(DeploymentConfigBuilder().memory(LIMIT).build(), quiet=True)
    try:
        before = pipeline.status()
        step = tmp_path / "swap_step_2.py"
        step.write_text(STEP.format(marker=str(marker), grow=GROW) + "# version 2\n")
        second = client.upload_model("memory-swap-step", step).configure("python")
        tiny = DeploymentConfigBuilder().memory("32Mi").build()
        with pytest.raises(WaitForDeployError, match="memory limit exceeded"):
            pipeline.replace_with_model_step(0, second).deploy(tiny, timeout_s=30, quiet=True)
        after = _undone(pipeline, before["version"])
        assert (after["status"], after["version"]) == ("Running", before["version"])
        assert "memory limit exceeded" in after["details"][0]
        assert [e["pid"] for e in after["engines"]] == [e["pid"] for e in before["engines"]]
        assert len(pipeline.infer(FRAME)) == len(FRAME)
    finally:
        pipeline.undeploy()


def _watch(pipeline: Pipeline, pid: int, timeout_s: float = 40) -> list[dict[str, Any]]:
    """The worker's statuses until a new process of it runs (or the time is up)."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = pipeline.status()
        (engine,) = status["engines"]
        seen.append(
            {
                "status": status["status"],
                "engine": engine["status"],
                "reason": engine["reason"],
                "pid": engine["pid"],
            }
        )
        if engine["status"] == "Running" and engine["pid"] != pid:
            break
        time.sleep(0.1)
    return seen


def test_a_worker_over_its_limit_is_stopped_and_restarted(
    client: Client, stack: dict[str, Any], tmp_path: Path, marker: Path
) -> None:
    pipeline = _pipeline(client, "memory-grow", tmp_path / "grow_step.py", marker)
    pipeline.deploy(DeploymentConfigBuilder().memory(LIMIT).build(), quiet=True)
    try:
        assert len(pipeline.infer(FRAME)) == len(FRAME)  # a healthy worker fits its limit
        (engine,) = pipeline.status()["engines"]
        assert engine["status"] == "Running"
        bootstrap, topics = stack["kafka_bootstrap"], pipeline.topics()
        sent = Sent()

        async def grow_once() -> dict[str, list[Any]]:
            reader = Reader(bootstrap, topics["output"], "grow")
            await reader.start()
            try:
                await produce(
                    bootstrap,
                    topics["input"],
                    "grow",
                    1,
                    per_second=10,
                    sent=sent,
                    values={0: numbered_row(0, first=GROW)},
                )
                seen.extend(await asyncio.to_thread(_watch, pipeline, engine["pid"]))
                missing = await reader.wait_for(set(sent.where), timeout_s=30)
                assert not missing, "the record that went over the limit was never answered"
                return reader.answers
            finally:
                await reader.stop()

        seen: list[dict[str, Any]] = []
        answers = asyncio.run(grow_once())

        assert marker.exists()
        over = [s for s in seen if s["reason"] and "memory limit exceeded" in s["reason"]]
        assert over, f"no status named the memory limit: {seen}"
        assert all(s["engine"] != "Running" and s["status"] != "Running" for s in over)
        assert "its limit is 400 MiB" in over[0]["reason"]
        last = seen[-1]
        assert last["engine"] == "Running" and last["pid"] != engine["pid"], seen  # restarted
        assert last["status"] == "Running" and last["reason"] is None
        # The record was read again by the new process and answered (at least once).
        (replies,) = answers.values()
        assert not any(is_error(a) for a in replies)
        assert {first_value(a.batch) for a in replies if a.batch} == {GROW}
        assert len(pipeline.infer(FRAME)) == len(FRAME)  # and it serves as before
    finally:
        pipeline.undeploy()
