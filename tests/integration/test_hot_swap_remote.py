"""Hot swaps with workers on other hosts (`weir worker`, started by hand, not by the server):
a redeploy and an undeploy stop them too, and an undone redeploy stops the ones that started
its version."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from control.errors import WaitForDeployError
from control.registry import Registry
from control.sdk.client import Client
from control.sdk.model import Model
from control.supervision import REMOTE_FORGET_S
from streams.status import WorkerStatus
from tests.integration._streams import Sent, send_and_collect
from tests.integration._swap_models import upload_models

pytestmark = pytest.mark.slow

CANNOT_START_HERE = """
import os, sys, time
from pathlib import Path
if any("worker_main" in arg for arg in sys.argv) and not os.environ.get("SWAP_REMOTE_HOST"):
    gate = Path({gate!r})  # the test opens it once a remote worker of this version runs
    while not gate.exists():
        time.sleep(0.1)
    raise RuntimeError("this step cannot start on the server's host")
def process_data(input_data):
    return {{"float_input": input_data["tensor"]}}
"""


@pytest.fixture(scope="module")
def models(client: Client, model_dir: Path) -> dict[str, Model]:
    return upload_models(client, model_dir)


def _remote_worker(
    stack: dict[str, Any], name: str, log: Path, *version: str
) -> subprocess.Popen[bytes]:
    """`weir worker <name> [version]` as on another host: started by hand, not by the
    server."""
    env = {
        **os.environ,
        "WEIR_HOME": str(stack["home"]),
        "SWAP_REMOTE_HOST": "1",
        "WEIR_KAFKA_BOOTSTRAP": stack["kafka_bootstrap"],
        "WEIR_REDIS_URL": stack["redis_url"],
    }
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "control.worker_main", name, *version, "--replica", "100"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _wait_running(registry: Registry, name: str, version: str) -> None:
    deadline = time.monotonic() + 60
    while not any(
        w.replica == 100 and w.version == version and w.status == "Running"
        for w in registry.workers("default", name)
    ):
        assert time.monotonic() < deadline, "the remote worker never reported Running"
        time.sleep(0.2)


def test_redeploying_and_undeploying_stop_workers_on_other_hosts_too(
    client: Client, stack: dict[str, Any], models: dict[str, Model], tmp_path: Path
) -> None:
    """A worker the server did not start (the compose `worker` service) drains and exits on a
    redeploy like the server's own, so every answer after deploy() returns comes from the new
    model; one on the new version leaves on undeploy."""
    name, registry = "swap-remote", Registry(stack["redis_url"])
    pipeline = client.build_pipeline(name).add_model_step(models["pre"])
    pipeline.add_model_step(models["swap-a"]).deploy(quiet=True)
    remotes = [_remote_worker(stack, name, tmp_path / "remote-1.log")]
    try:
        _wait_running(registry, name, pipeline.status()["version"])
        status = pipeline.status()
        assert [(e["remote"], e["status"]) for e in status["engines"]] == [
            (False, "Running"),
            (True, "Running"),
        ]
        pipeline.replace_with_model_step(1, models["swap-b"]).deploy(quiet=True)
        assert remotes[0].wait(timeout=60) == 0  # drained, then left
        assert [e["remote"] for e in pipeline.status()["engines"]] == [False]
        # Started by hand on the version the redeploy replaced: refused, not serving it.
        stale = _remote_worker(stack, name, tmp_path / "stale.log", status["version"])
        assert stale.wait(timeout=60) == 2
        assert "run `weir worker swap-remote`" in (tmp_path / "stale.log").read_text()
        answers = asyncio.run(
            send_and_collect(
                stack["kafka_bootstrap"],
                pipeline.topics(),
                "remote",
                100,
                per_second=200,
                sent=Sent(),
            )
        )
        swap_b = f"{models['swap-b'].name}@{models['swap-b'].version[:8]}"
        assert {
            a.batch.column("metadata.model")[0].as_py()
            for replies in answers.values()
            for a in replies
            if a.batch
        } == {swap_b}

        remotes.append(_remote_worker(stack, name, tmp_path / "remote-2.log"))
        version = pipeline.status()["version"]
        _wait_running(registry, name, version)
        # The last heartbeat of a remote worker that died (a host that went away).
        registry.beat(
            WorkerStatus(
                worker_id="swap-remote-dead",
                workspace="default",
                pipeline=name,
                version=version,
                replica=101,
                pid=1,
                host="gone",
                status="Running",
                time=datetime.now(UTC) - timedelta(seconds=60),
            )
        )
        status = pipeline.status()
        assert status["status"] == "Running"  # the server's own workers run
        dead = next(e for e in status["engines"] if e["name"] == "swap-remote-dead")
        assert (dead["remote"], dead["status"]) == (True, "Error")
        assert "no heartbeat" in dead["reason"]
        assert any("swap-remote-dead on gone" in line for line in status["details"])
        registry.beat(
            WorkerStatus(  # silent for longer than a host would be down and back
                worker_id="swap-remote-removed",
                workspace="default",
                pipeline=name,
                version=version,
                replica=102,
                pid=1,
                host="removed",
                status="Running",
                time=datetime.now(UTC) - timedelta(seconds=REMOTE_FORGET_S + 1),
            )
        )
        deadline = time.monotonic() + 10
        while any(w.worker_id == "swap-remote-removed" for w in registry.workers("default", name)):
            assert time.monotonic() < deadline, "a long-silent remote worker was never forgotten"
            time.sleep(0.2)
        assert "swap-remote-dead" in [w.worker_id for w in registry.workers("default", name)]
        pipeline.undeploy()
        assert remotes[1].wait(timeout=60) == 0
        assert registry.workers("default", name) == []  # nothing left to list on a redeploy
    finally:
        for remote in remotes:
            if remote.poll() is None:
                remote.kill()
                remote.wait()
        pipeline.undeploy()


def test_an_undone_redeploy_stops_the_remote_workers_that_started_its_version(
    client: Client, stack: dict[str, Any], models: dict[str, Model], model_dir: Path, tmp_path: Path
) -> None:
    """A new version that runs on another host but cannot start on the server's is undone,
    and the remote worker that started it drains and exits too (the old version serves on)."""
    name, registry = "swap-remote-undo", Registry(stack["redis_url"])
    pipeline = client.build_pipeline(name).add_model_step(models["pre"])
    pipeline.add_model_step(models["swap-a"]).deploy(quiet=True)
    before = pipeline.status()["version"]
    gate = tmp_path / "fail-now"
    step = model_dir / "cannot_start_here.py"
    step.write_text(CANNOT_START_HERE.format(gate=str(gate)))
    gated = client.upload_model("swap-gated", step).configure("python")
    outcome: list[BaseException | None] = []

    def redeploy() -> None:
        try:
            pipeline.replace_with_model_step(0, gated).deploy(quiet=True)
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - checked below
            outcome.append(exc)

    deploying = threading.Thread(target=redeploy)
    deploying.start()
    remote: subprocess.Popen[bytes] | None = None
    try:
        deadline = time.monotonic() + 60
        while (new := registry.get_deployment("default", name).version) == before:
            assert time.monotonic() < deadline, "the redeploy never started"
            time.sleep(0.1)
        remote = _remote_worker(stack, name, tmp_path / "remote.log")
        _wait_running(registry, name, new)
        listed = [e for e in pipeline.status()["engines"] if e["remote"]]
        assert [(e["version"], e["status"]) for e in listed] == [(new, "Running")]
        gate.touch()
        deploying.join(timeout=120)
        assert isinstance(outcome[0], WaitForDeployError)
        assert "cannot start on the server's host" in str(outcome[0])
        assert remote.wait(timeout=60) == 0  # drained, then left
        after = pipeline.status()
        assert (after["status"], after["version"], after["failed_version"]) == (
            "Running",
            before,
            new,
        )
        assert not [e for e in after["engines"] if e["remote"]]
    finally:
        gate.touch()
        deploying.join(timeout=120)
        if remote is not None and remote.poll() is None:
            remote.kill()
            remote.wait()
        pipeline.undeploy()
