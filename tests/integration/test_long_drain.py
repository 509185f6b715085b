"""A hot swap whose old deployment has a long backlog: the drain takes as long as it needs.

A second server (its own Redis, the session's broker) runs with
WEIR_DRAIN_TIMEOUT_S=6. A pipeline's second step runs as a sidekick and takes
a quarter of a second per message, so a burst of 100 messages leaves ~15 s of
work in the sidekick's topic. Redeploying then must not cut the old
deployment's drain short at 6 s (it keeps finishing records): every message
is answered, once, and the backlog by the old version. Once drained, a
retired deployment's topics are deleted. If the old main worker is SIGKILLed
while it drains, the server starts it again to finish the drain: every message
is still answered (a repeat is allowed there: the killed worker's last sends
were not committed), and the old deployment's topics still go.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from control.sdk.client import Client
from control.sdk.config import DeploymentConfigBuilder
from engine import codecs
from streams.settings import WorkerSettings
from streams.topics import TopicMap
from streams.worker_spec import group_id
from tests.integration._servers import own_server
from tests.integration._streams import Reader, Sent, produce, worker_warnings

pytestmark = pytest.mark.slow

FAST_STEP = """
def process_data(input_data):
    return {"tensor": input_data["tensor"]}
"""
SLOW_STEP = """
import time
def process_data(input_data):
    time.sleep(0.25)
    return {"out": input_data["tensor"][:, 0]}
"""
MESSAGES = 100
ROWS = WorkerSettings.model_fields["max_batch_rows"].default + 1  # over the micro-batch size,
# so each message runs (and sleeps) alone
DRAIN_TIMEOUT_S = 6


@pytest.fixture(scope="module")
def drain_server(
    stack: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[dict[str, Any], Client]]:
    home = tmp_path_factory.mktemp("weir-drain")
    with own_server(stack, home, {"WEIR_DRAIN_TIMEOUT_S": str(DRAIN_TIMEOUT_S)}) as server:
        yield server


def _message(n: int) -> bytes:
    tensor = np.full((ROWS, 10), float(n), dtype=np.float32)
    return codecs.encode(codecs.batch_from_arrays({"tensor": tensor}), codecs.ARROW_STREAM)


@pytest.mark.parametrize("kill_while_draining", [False, True], ids=["drained", "killed"])
def test_a_drain_that_keeps_finishing_records_is_not_cut_short(
    drain_server: tuple[dict[str, Any], Client], tmp_path: Path, kill_while_draining: bool
) -> None:
    record, client = drain_server
    (tmp_path / "fast.py").write_text(FAST_STEP)
    (tmp_path / "slow.py").write_text(SLOW_STEP)
    fast = client.upload_model("drain-fast", tmp_path / "fast.py").configure("python")
    slow = client.upload_model("drain-slow", tmp_path / "slow.py").configure("python")
    slow_too = client.upload_model("drain-slow-2", tmp_path / "slow.py").configure("python")
    name = "drain-killed" if kill_while_draining else "long-drain"
    pipeline = client.build_pipeline(name).add_model_step(fast).add_model_step(slow)
    pipeline.deploy(DeploymentConfigBuilder().sidekick_cpus(slow, 1).build(), quiet=True)
    old_version = pipeline.status()["version"]
    [old_topic] = _sidekick_topics(record, name)
    old_deployment = TopicMap.load().parse("boundary", old_topic)["deployment"]  # type: ignore[index]
    topics = pipeline.topics()
    sent = Sent()

    async def scenario() -> dict[str, list[Any]]:
        reader = Reader(record["kafka_bootstrap"], topics["output"], "drain")
        await reader.start()
        try:
            await produce(
                record["kafka_bootstrap"],
                topics["input"],
                "drain",
                MESSAGES,
                per_second=1000.0,
                sent=sent,
                values={n: _message(n) for n in range(MESSAGES)},
            )
            # The whole burst is the old deployment's backlog once its fast first step has
            # passed every message on to its sidekick's topic.
            passed_on = Reader(record["kafka_bootstrap"], old_topic, "drain")
            await passed_on.start()
            try:
                behind = await passed_on.wait_for(set(sent.where), timeout_s=60)
            finally:
                await passed_on.stop()
            assert not behind, f"{len(behind)} never reached the sidekick's topic"
            await asyncio.to_thread(
                lambda: pipeline.replace_with_model_step(1, slow_too).deploy(
                    DeploymentConfigBuilder().sidekick_cpus(slow_too, 1).build(), quiet=True
                )
            )
            if kill_while_draining:  # the old deployment drains ~15 s of the sidekick's work
                await asyncio.sleep(1)
                [pid] = _main_workers(old_deployment)
                os.kill(pid, signal.SIGKILL)
            missing = await reader.wait_for(set(sent.where), timeout_s=90)
            assert not missing, (
                f"{len(missing)} never answered; the workers said:\n"
                + worker_warnings(record["home"])
            )
            sidekick_topics = await asyncio.to_thread(_sidekick_topics, record, name)
            [new_topic] = set(sidekick_topics) - {old_topic}
            await reader.read_every_answer(
                {
                    group_id("default", name, "main"): topics["input"],
                    group_id("default", name, "sidekick", 1): new_topic,
                }
            )
            return reader.answers
        finally:
            await reader.stop()

    try:
        answers = asyncio.run(scenario())
        # The old deployment drained cleanly: its sidekick's topic goes; the new one's stays.
        assert _gone(record, old_topic), "the drained deployment's topic is still there"
        [new_topic] = _sidekick_topics(record, name)
    finally:
        pipeline.undeploy()
    assert _gone(record, new_topic), "an undeployed deployment's topic is still there"
    if kill_while_draining:
        server_log = Path(record["home"], "run", "server.log").read_text()
        assert "starting it again to finish the drain" in server_log, server_log[-2000:]
    else:
        assert {rid: len(a) for rid, a in answers.items() if len(a) != 1} == {}
    by_other = {
        rid: a.env.version for rid, (a, *_) in answers.items() if a.env.version != old_version
    }
    assert by_other == {}, "the backlog was not answered by the version it entered"
    for rid, (answer, *_) in answers.items():
        assert answer.batch is not None and answer.batch.num_rows == ROWS, rid


def _main_workers(deployment: str) -> list[int]:
    """The pids of the main worker processes running `deployment`."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:  # not a process, or gone
            continue
        if (
            b"control.worker_main" in args
            and deployment.encode() in args
            and args[args.index(b"--role") + 1] == b"main"
        ):
            pids.append(int(proc.name))
    return pids


def _sidekick_topics(record: dict[str, Any], pipeline: str) -> list[str]:
    """The topics feeding the sidekick step of each deployment of the pipeline there is."""

    async def listed() -> list[str]:
        admin = AIOKafkaAdminClient(bootstrap_servers=record["kafka_bootstrap"])
        await admin.start()
        try:
            topics = TopicMap.load()
            return [
                t
                for t in await admin.list_topics()
                if (topics.parse("boundary", t) or {}).get("pipeline") == pipeline
                and t.endswith(".s1")
            ]
        finally:
            await admin.close()

    return asyncio.run(listed())


def _gone(record: dict[str, Any], topic: str, wait_s: float = 30.0) -> bool:
    """Whether `topic` is (or within `wait_s` becomes) absent from the broker."""

    async def absent() -> bool:
        admin = AIOKafkaAdminClient(bootstrap_servers=record["kafka_bootstrap"])
        await admin.start()
        try:
            deadline = time.monotonic() + wait_s
            while topic in await admin.list_topics():
                if time.monotonic() > deadline:
                    return False
                await asyncio.sleep(0.5)
            return True
        finally:
            await admin.close()

    return asyncio.run(absent())
