"""`weir serve` killed and restarted: the workers serve on, and the new server takes them back.

The server is SIGKILLed while records flow: every record sent while it is down
is answered by the workers it had started; the SDK says the server is not
answering; the restarted server reports the same worker processes Running, and
`weir down` leaves none of them alive.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

import pytest

from control.embedded import Service
from control.errors import StackError
from control.sdk.client import Client
from control.stack import down, up
from control.worker_processes import records_dir
from tests.integration._own_server import own_server
from tests.integration._streams import Reader, Sent, is_error, produce, request_id

pytestmark = pytest.mark.slow

REDIS_DB = {"tansu": 12, "kafka": 14}
"""A Redis database of each leg's own (the legs share one Redis); test two takes the next."""
STEP = "def process_data(input_data):\n    return {'doubled': input_data['tensor'] * 2}\n"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def _kill(pid: int) -> None:
    """SIGKILL the server (our child: `up` started it in this process) and reap it."""
    os.kill(pid, signal.SIGKILL)
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        while _alive(pid):
            time.sleep(0.05)


def _wait_running(client: Client, name: str, timeout_s: float = 60) -> dict[str, object]:
    deadline = time.monotonic() + timeout_s
    status = client.get_pipeline(name).status()
    while status["status"] != "Running" and time.monotonic() < deadline:
        time.sleep(0.2)
        status = client.get_pipeline(name).status()
    return status


def test_workers_serve_through_a_server_kill_and_are_taken_back(
    broker: str, kafka_service: Service, redis_service: Service, tmp_path: Path
) -> None:
    step_file = tmp_path / "double.py"
    step_file.write_text(STEP)
    (tmp_path / "fence").mkdir()
    with own_server(tmp_path / "fence", kafka_service, redis_service, REDIS_DB[broker]) as server:
        client = Client(server_url=server.url, token=server.token())
        pipeline = client.build_pipeline("restart").add_model_step(
            client.upload_model("restart-double", step_file)
        )
        pipeline.deploy(quiet=True)
        topics = pipeline.topics()
        pids = sorted(e["pid"] for e in pipeline.status()["engines"])
        server_pid = json.loads(server.settings.stack_file.read_text())["pids"]["server"]
        bootstrap = kafka_service.address
        sent = Sent()

        async def through_the_kill() -> set[str]:
            reader = Reader(bootstrap, topics["output"], "restart")
            await reader.start()
            try:
                done = asyncio.Event()
                producing = asyncio.create_task(
                    produce(
                        bootstrap,
                        topics["input"],
                        "restart",
                        100_000,
                        per_second=50,
                        sent=sent,
                        until=done,
                    )
                )
                await asyncio.sleep(2)
                await asyncio.to_thread(_kill, server_pid)
                await asyncio.sleep(4)  # records keep coming while the server is gone
                done.set()
                await producing
                missing = await reader.wait_for(set(sent.where), timeout_s=60)
                errors = {
                    rid
                    for rid, answers in reader.answers.items()
                    if any(is_error(a) for a in answers)
                }
                return missing | errors
            finally:
                await reader.stop()

        unanswered = asyncio.run(through_the_kill())
        assert len(sent.where) > 150 and request_id("restart", 150) in sent.where
        assert unanswered == set(), f"{len(unanswered)} unanswered, e.g. {sorted(unanswered)[:5]}"
        assert all(_alive(p) for p in pids)

        with pytest.raises(StackError, match="is not answering.*weir up"):
            pipeline.status()

        record = up(server.settings, detach=True, say=lambda _: None)
        restarted = Client(server_url=record["server_url"], token=record["token"])
        status = _wait_running(restarted, "restart")
        assert status["status"] == "Running", status
        assert sorted(e["pid"] for e in status["engines"]) == pids  # taken back, not started anew
        assert all(e["status"] == "Running" for e in status["engines"])

        down(server.settings, say=lambda _: None)
        deadline = time.monotonic() + 30
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(p) for p in pids)
        assert list(records_dir(server.settings).glob("*.json")) == []


def test_down_stops_the_workers_a_killed_server_left(
    broker: str, kafka_service: Service, redis_service: Service, tmp_path: Path
) -> None:
    step_file = tmp_path / "double.py"
    step_file.write_text(STEP)
    (tmp_path / "fence").mkdir()
    with own_server(
        tmp_path / "fence", kafka_service, redis_service, REDIS_DB[broker] + 1
    ) as server:
        client = Client(server_url=server.url, token=server.token())
        pipeline = client.build_pipeline("orphans").add_model_step(
            client.upload_model("orphans-double", step_file)
        )
        pipeline.deploy(quiet=True)
        pids = [e["pid"] for e in pipeline.status()["engines"]]
        _kill(json.loads(server.settings.stack_file.read_text())["pids"]["server"])
        assert all(_alive(p) for p in pids)
        said: list[str] = []
        down(server.settings, say=said.append)
        assert not any(_alive(p) for p in pids)
        assert said == [
            f"stopped {len(pids)} worker(s) the server had left running",
            "weir is down",
        ]
