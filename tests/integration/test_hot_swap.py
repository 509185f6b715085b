"""Hot swap on the real embedded stack: redeploy twice while a numbered stream flows.

A two-step pipeline (a Python step, then a ridge model) takes ~300 records/s
straight on its Kafka input topic (for ~20 s) while it is redeployed to a
second and then a third model, and HTTP inferences run beside. Every number must be answered
exactly once on the result topic and logged exactly once, and the answers on
each input partition must move from one model to the next only forward, once
per swap.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from itertools import groupby
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from control.demo.models import diabetes_regressor
from control.errors import WaitForDeployError
from control.registry import Registry
from control.sdk.client import Client
from control.sdk.model import Model
from control.sdk.pipeline import Pipeline
from control.supervision import REMOTE_FORGET_S
from streams.status import WorkerStatus
from tests.integration._streams import (
    Answer,
    Reader,
    Sent,
    first_value,
    is_error,
    produce,
    send_and_collect,
    worker_warnings,
)

pytestmark = pytest.mark.slow

PASS_THROUGH = """
def process_data(input_data):
    return {"float_input": input_data["tensor"]}
"""
MAX_RECORDS = 20_000
CANNOT_START = """
import sys
if any("worker_main" in arg for arg in sys.argv):  # loads on the server, not in a worker
    raise RuntimeError("this step cannot start in a worker")
def process_data(input_data):
    return {"float_input": input_data["tensor"]}
"""
PER_SECOND = 300.0
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
    pre = model_dir / "swap_pre.py"
    pre.write_text(PASS_THROUGH)
    found = {"pre": client.upload_model("swap-pre", pre).configure("python")}
    for name, alpha in (("swap-a", 1.0), ("swap-b", 0.1), ("swap-c", 0.01)):
        path = diabetes_regressor(model_dir / f"{name}.onnx", alpha=alpha)
        found[name] = client.upload_model(name, path).configure("onnx")
    return found


def _http_load(pipeline: Pipeline, stop: threading.Event, outcomes: list[Any]) -> None:
    row = pd.DataFrame({"tensor": [np.full(10, 0.02).tolist()]})
    while not stop.is_set():
        try:
            outcomes.append(len(pipeline.infer(row, timeout=30)))
        except Exception as exc:  # noqa: BLE001 - every failure is reported by the test
            outcomes.append(exc)
        stop.wait(0.05)


def test_redeploying_twice_under_load_answers_every_record_exactly_once(
    client: Client, stack: dict[str, Any], models: dict[str, Model]
) -> None:
    pipeline = client.build_pipeline("hot-swap").add_model_step(models["pre"])
    pipeline.add_model_step(models["swap-a"]).deploy(quiet=True)
    versions = [pipeline.status()["version"]]
    bootstrap, topics = stack["kafka_bootstrap"], pipeline.topics()
    prefix = "swap"
    sent = Sent()
    http: list[Any] = []
    stop_http = threading.Event()
    http_thread = threading.Thread(target=_http_load, args=(pipeline, stop_http, http))

    async def scenario() -> dict[str, list[Answer]]:
        reader = Reader(bootstrap, topics["output"], prefix)
        await reader.start()
        try:
            done = asyncio.Event()
            producing = asyncio.create_task(
                produce(
                    bootstrap,
                    topics["input"],
                    prefix,
                    MAX_RECORDS,
                    per_second=PER_SECOND,
                    sent=sent,
                    until=done,
                )
            )
            http_thread.start()
            for model in ("swap-b", "swap-c"):
                await asyncio.sleep(2)
                await asyncio.to_thread(
                    lambda m=model: pipeline.replace_with_model_step(1, models[m]).deploy(
                        quiet=True
                    )
                )
                versions.append(pipeline.status()["version"])
            await asyncio.sleep(2)
            done.set()
            await producing
            missing = await reader.wait_for(set(sent.where), timeout_s=60)
            assert not missing, (
                f"{len(missing)} never answered, e.g. {sorted(missing)[:5]} at (partition, "
                f"offset) {sorted(sent.where[m] for m in missing)[:8]}; the workers said:\n"
                + worker_warnings(stack["home"])
            )
            await asyncio.sleep(2)  # a late repeat would come now (the old workers are gone)
            await reader.catch_up()
            return reader.answers
        finally:
            await reader.stop()

    try:
        try:
            answers = asyncio.run(scenario())
        finally:
            stop_http.set()
            if http_thread.is_alive():
                http_thread.join(60)
        repeated = {rid: len(a) for rid, a in answers.items() if len(a) != 1}
        assert not repeated, f"answered more than once: {dict(list(repeated.items())[:5])}"
        errors = [rid for rid, (a,) in answers.items() if is_error(a)]
        assert not errors, f"error replies: {errors[:5]}"
        marked = [rid for rid, (a,) in answers.items() if a.env.redelivered]
        assert not marked, f"marked as possible repeats after clean handovers: {marked[:5]}"
        for rid, (answer,) in answers.items():
            assert answer.batch is not None
            assert first_value(answer.batch) == int(rid.rsplit("-", 1)[1])

        # Per input partition, in input order, the model only ever moves forward.
        order = [
            f"{models[m].name}@{models[m].version[:8]}" for m in ("swap-a", "swap-b", "swap-c")
        ]
        by_partition: dict[int, list[tuple[int, str, str]]] = {}
        for rid, (partition, offset) in sent.where.items():
            batch = answers[rid][0].batch
            assert batch is not None
            by_partition.setdefault(partition, []).append(
                (
                    offset,
                    batch.column("metadata.model")[0].as_py(),
                    batch.column("metadata.pipeline_version")[0].as_py(),
                )
            )
        seen_models: set[str] = set()
        for partition, rows in by_partition.items():
            runs = [model for model, _ in groupby(model for _, model, _ in sorted(rows))]
            assert runs == sorted(set(runs), key=order.index), (
                f"partition {partition} switched models back and forth: {runs}"
            )
            seen_models.update(runs)
            for _, model, version in rows:
                assert versions[order.index(model)] == version
        assert seen_models == set(order), "both swaps should have taken effect"

        assert http and all(outcome == 1 for outcome in http), (
            f"HTTP inferences failed during the swaps: {[o for o in http if o != 1][:3]}"
        )

        logs = pipeline.logs(limit=100_000)
        ours = logs[logs["request_id"].str.startswith(prefix + "-")]
        assert sorted(ours["request_id"]) == sorted(sent.where)
        assert ours["metadata.model"].isin(order).all()
    finally:
        pipeline.undeploy()


def test_a_redeploy_that_cannot_start_leaves_the_old_version_serving(
    client: Client, models: dict[str, Model], model_dir: Path
) -> None:
    pipeline = client.build_pipeline("swap-fails").add_model_step(models["pre"])
    pipeline.add_model_step(models["swap-a"]).deploy(quiet=True)
    before = pipeline.status()
    bad_file = model_dir / "cannot_start.py"
    bad_file.write_text(CANNOT_START)
    bad = client.upload_model("swap-bad", bad_file).configure("python")
    row = pd.DataFrame({"tensor": [np.full(10, 0.02).tolist()]})
    try:
        with pytest.raises(WaitForDeployError, match="cannot start in a worker"):
            pipeline.replace_with_model_step(0, bad).deploy(quiet=True)
        after = pipeline.status()
        assert (after["status"], after["version"]) == ("Running", before["version"])
        # The old workers were never stopped.
        assert [e["pid"] for e in after["engines"]] == [e["pid"] for e in before["engines"]]
        assert len(pipeline.infer(row)) == 1
    finally:
        pipeline.undeploy()


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
