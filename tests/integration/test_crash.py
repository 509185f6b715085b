"""Failures on the real embedded stack: a worker killed mid-stream, and records that always fail."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from control.demo.models import diabetes_regressor
from control.sdk.client import Client
from control.sdk.model import Model
from control.sdk.pipeline import Pipeline
from streams.messages import ERROR, REQUEST_ID, SOURCE
from streams.aiokafka_internals import topic_partitions
from streams.worker_spec import group_id
from tests.integration._streams import (
    Reader,
    Sent,
    first_value,
    is_error,
    numbered_row,
    produce,
)

pytestmark = pytest.mark.slow

POISON = -999.0
STEP = f"""
def process_data(input_data):
    tensor = input_data["tensor"]
    if (tensor[:, 0] == {POISON}).any():
        raise ValueError("poison row")
    return {{"float_input": tensor}}
"""


@pytest.fixture(scope="module")
def models(client: Client, model_dir: Path) -> dict[str, Model]:
    step = model_dir / "crash_step.py"
    step.write_text(STEP)
    ridge = diabetes_regressor(model_dir / "crash-ridge.onnx")
    return {
        "step": client.upload_model("crash-step", step).configure("python"),
        "ridge": client.upload_model("crash-ridge", ridge).configure("onnx"),
    }


def _deploy(client: Client, name: str, models: dict[str, Model]) -> Pipeline:
    pipeline = client.build_pipeline(name).add_model_step(models["step"])
    return pipeline.add_model_step(models["ridge"]).deploy(quiet=True)


def test_a_killed_worker_is_restarted_and_the_stream_completes(
    broker: str,
    client: Client,
    stack: dict[str, Any],
    models: dict[str, Model],
    diabetes_onnx: Path,
) -> None:
    """SIGKILL a worker at 250 records a second, then hot-swap a step while records flow.
    Apache Kafka (transactions): every request answered exactly once on the result topic
    (read committed) and nothing marked. Tansu: at least once, and the repeats marked. There
    the kill comes when the worker has answered records it has not committed, so it repeats
    some; on each partition the takeover marks one run of records from the last commit, the
    repeats first, then those the dead worker read but never answered."""
    pipeline = _deploy(client, "crash-kill", models)
    swapped = client.upload_model("crash-ridge-2", diabetes_onnx).configure("onnx")
    bootstrap, topics, prefix = stack["kafka_bootstrap"], pipeline.topics(), "kill"
    sent = Sent()
    states: list[str] = []

    async def scenario() -> dict[str, list[Any]]:
        reader = Reader(bootstrap, topics["output"], prefix)
        await reader.start()
        try:
            producing = asyncio.create_task(
                produce(bootstrap, topics["input"], prefix, 3000, per_second=250, sent=sent)
            )
            await asyncio.sleep(3)
            (engine,) = pipeline.status()["engines"]
            if broker == "tansu":
                group = group_id("default", pipeline.name, "main")
                await _stop_with_work_uncommitted(
                    engine["pid"], reader, bootstrap, group, topics["input"]
                )
            os.kill(engine["pid"], signal.SIGKILL)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                state = (await asyncio.to_thread(pipeline.status))["status"]
                states.append(state)
                if state == "Running" and any(s != "Running" for s in states):
                    break
                await asyncio.sleep(0.2)
            await asyncio.to_thread(
                lambda: pipeline.replace_with_model_step(1, swapped).deploy(quiet=True)
            )
            await producing
            missing = await reader.wait_for(set(sent.where), timeout_s=60)
            assert not missing, f"{len(missing)} never answered, e.g. {sorted(missing)[:5]}"
            await reader.read_every_answer(
                {group_id("default", pipeline.name, "main"): topics["input"]}
            )
            return reader.answers
        finally:
            await reader.stop()

    try:
        answers = asyncio.run(scenario())
        down = next(i for i, state in enumerate(states) if state != "Running")
        assert states[-1] == "Running" and down < len(states) - 1, states  # not Running, then back
        for rid, replies in answers.items():  # a repeat is the same answer
            assert not any(is_error(a) for a in replies), rid
            assert {first_value(a.batch) for a in replies if a.batch} == {int(rid.split("-")[1])}
        repeated = {rid: replies for rid, replies in answers.items() if len(replies) > 1}
        marked = {
            rid for rid, replies in answers.items() if any(a.env.redelivered for a in replies)
        }
        if broker == "kafka":  # exactly once: the dead worker's open transaction was aborted
            assert repeated == {} and marked == set()
        else:  # the restarted worker found the dead one's partitions unreleased: it marks
            # what it ran from their last commit up to their end then
            assert repeated, "the kill repeated nothing"
            for rid, replies in repeated.items():  # the first answer, then marked repeats
                assert [a.env.redelivered for a in replies].count(False) == 1, (rid, replies)
            _assert_marks_run_from_the_repeats(sent, set(repeated), marked)
        logs = pipeline.logs(limit=100_000)
        ours = logs[logs["request_id"].str.startswith(prefix + "-")]
        assert sorted(ours["request_id"]) == sorted(sent.where)  # exactly once each
        (engine,) = pipeline.status()["engines"]
        assert engine["status"] == "Running"
    finally:
        pipeline.undeploy()


async def _stop_with_work_uncommitted(
    pid: int, reader: Reader, bootstrap: str, group: str, topic: str
) -> None:
    """SIGSTOP the worker at a moment when it has answered more records than its group
    committed (Tansu: an offset counts records), so that killing it then repeats some."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await admin.start()
    await probe.start()
    try:
        tps = await topic_partitions(probe, topic)
        deadline = time.monotonic() + 30
        while True:
            os.kill(pid, signal.SIGSTOP)
            await reader.catch_up()
            offsets = await admin.list_consumer_group_offsets(group, partitions=tps)
            committed = sum(max(o.offset, 0) for o in offsets.values())
            if len(reader.answers) > committed:
                return
            os.kill(pid, signal.SIGCONT)
            assert time.monotonic() < deadline, "the worker never had answers uncommitted"
            await asyncio.sleep(0.02)
    finally:
        await probe.stop()
        await admin.close()


def _assert_marks_run_from_the_repeats(sent: Sent, repeated: set[str], marked: set[str]) -> None:
    """On each input partition the marked records are one run of offsets, starting with
    the repeated ones."""
    by_partition: dict[int, list[tuple[int, str]]] = {}
    for rid, (partition, offset) in sent.where.items():
        by_partition.setdefault(partition, []).append((offset, rid))
    for partition, records in by_partition.items():
        flags = [(rid in repeated, rid in marked) for _, rid in sorted(records)]
        run = [i for i, (_, is_marked) in enumerate(flags) if is_marked]
        assert not run or run == list(range(run[0], run[-1] + 1)), (partition, run)
        repeats = [i for i, (is_repeat, _) in enumerate(flags) if is_repeat]
        assert repeats == run[: len(repeats)], (partition, repeats, run)


async def _read_all(
    bootstrap: str, topic: str, expect: set[str], timeout_s: float = 30
) -> dict[str, list[tuple[dict[str, bytes], bytes]]]:
    """Every record of `topic` (from its start to its end once each id in `expect` was seen)
    whose request id is in `expect`: a copy per retry would show as a second one."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=20,
    )
    await consumer.start()
    found: dict[str, list[tuple[dict[str, bytes], bytes]]] = {}

    async def read() -> None:
        for msgs in (await consumer.getmany(timeout_ms=500)).values():
            for msg in msgs:
                headers = dict(msg.headers)
                rid = headers.get(REQUEST_ID, b"").decode()
                if rid in expect:
                    found.setdefault(rid, []).append((headers, msg.value or b""))

    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and set(found) != expect:
            await read()
        ends = await consumer.end_offsets(list(consumer.assignment()))
        while time.monotonic() < deadline and any(
            [await consumer.position(tp) < end for tp, end in ends.items()]
        ):
            await read()
        return found
    finally:
        await consumer.stop()


def test_poison_records_go_to_the_dead_letter_topic_and_the_stream_moves_on(
    client: Client, stack: dict[str, Any], models: dict[str, Model]
) -> None:
    pipeline = _deploy(client, "crash-poison", models)
    bootstrap, topics, prefix = stack["kafka_bootstrap"], pipeline.topics(), "poison"
    sent = Sent()
    values = {20: numbered_row(20, first=POISON), 30: b"\x00 not an Arrow stream"}

    async def scenario() -> dict[str, list[Any]]:
        reader = Reader(bootstrap, topics["output"], prefix)
        await reader.start()
        try:
            await produce(
                bootstrap, topics["input"], prefix, 60, per_second=200, sent=sent, values=values
            )
            missing = await reader.wait_for(set(sent.where), timeout_s=60)
            assert not missing, f"never answered: {sorted(missing)[:5]}"
            return reader.answers
        finally:
            await reader.stop()

    try:
        answers = asyncio.run(scenario())
        failed = {
            rid: replies[0].env.error for rid, replies in answers.items() if is_error(replies[0])
        }
        assert set(failed) == {"poison-20", "poison-30"}
        assert failed["poison-20"]["type"] == "StepFailed"
        assert "poison row" in failed["poison-20"]["message"]
        assert failed["poison-20"]["attempts"] == "3"  # retried: it might have been transient
        assert failed["poison-30"]["type"] == "CodecError"
        assert failed["poison-30"]["attempts"] == "1"  # unreadable: not worth a retry
        for rid, replies in answers.items():
            if rid not in failed:
                assert first_value(replies[0].batch) == int(rid.split("-")[1])

        dead = asyncio.run(_read_all(bootstrap, topics["dead_letter"], set(failed)))
        assert {rid: len(copies) for rid, copies in dead.items()} == {
            "poison-20": 1,
            "poison-30": 1,
        }
        for rid, kind, attempts in (
            ("poison-20", "StepFailed", "3"),
            ("poison-30", "CodecError", "1"),
        ):
            [(headers, value)] = dead[rid]
            assert value == values[int(rid.split("-")[1])]
            error = json.loads(headers[ERROR])
            assert (error["type"], error["attempts"]) == (kind, attempts), error
            assert json.loads(headers[SOURCE])[:2] == [topics["input"], sent.where[rid][0]]
        assert "poison row" in json.loads(dead["poison-20"][0][0][ERROR])["message"]

        logs = pipeline.logs(limit=1000)
        ours = logs[logs["request_id"].str.startswith(prefix + "-")].set_index("request_id")
        assert sorted(ours.index) == sorted(sent.where)
        assert "poison row" in ours.loc["poison-20", "metadata.error"]
        assert ours.loc["poison-20", "in.tensor"][0] == POISON
        assert "CodecError" in ours.loc["poison-30", "metadata.error"]
        invalid = pipeline.logs(limit=1000, valid=False)
        assert {"poison-20", "poison-30"} <= set(invalid["request_id"])
    finally:
        pipeline.undeploy()
