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
import threading
import time
from itertools import groupby
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from control.errors import WaitForDeployError
from control.sdk.client import Client
from control.sdk.model import Model
from control.sdk.pipeline import Pipeline
from streams.worker_spec import group_id
from tests.integration._streams import (
    Answer,
    Reader,
    Sent,
    find_by_first_value,
    first_value,
    is_error,
    produce,
    worker_warnings,
)
from tests.integration._swap_models import upload_models

pytestmark = pytest.mark.slow

MAX_RECORDS = 20_000
CANNOT_START = """
import sys
if any("worker_main" in arg for arg in sys.argv):  # loads on the server, not in a worker
    raise RuntimeError("this step cannot start in a worker")
def process_data(input_data):
    return {"float_input": input_data["tensor"]}
"""
PER_SECOND = 300.0
HTTP_FIRST_VALUE = 1_000_000.0  # above every numbered record's


@pytest.fixture(scope="module")
def models(client: Client, model_dir: Path) -> dict[str, Model]:
    return upload_models(client, model_dir)


def _http_load(
    pipeline: Pipeline, stop: threading.Event, outcomes: list[tuple[float, float, Any]]
) -> None:
    """Send 1-row inferences one after another until `stop`: each row's first value is its
    own (HTTP_FIRST_VALUE + n), so a failed one can be looked for on the topics; records
    (first value, when sent, rows answered or the exception)."""
    n = 0
    while not stop.is_set():
        n += 1
        x = np.full(10, 0.02)
        x[0] = HTTP_FIRST_VALUE + n
        sent_at = time.time()
        try:
            answer: Any = len(pipeline.infer(pd.DataFrame({"tensor": [x.tolist()]}), timeout=30))
        except Exception as exc:  # noqa: BLE001 - every failure is reported by the test
            answer = exc
        outcomes.append((float(x[0]), sent_at, answer))
        stop.wait(0.05)


def _where_http_failures(
    bootstrap: str, topics: dict[str, str], failed: list[tuple[float, float, Any]]
) -> str:
    """For a failure message: each failed HTTP request, and where its record and its answer
    lie on the topics (partition, offset, seconds after it was sent), if anywhere."""
    wanted = {first for first, _, _ in failed}
    requests = asyncio.run(find_by_first_value(bootstrap, topics["input"], wanted))
    answers = asyncio.run(find_by_first_value(bootstrap, topics["output"], wanted))

    def where(found: list[tuple[int, int, int]], sent_at: float) -> str:
        return ", ".join(f"p{p}@{o} +{t / 1000 - sent_at:.1f}s" for p, o, t in found) or "nowhere"

    return "\n".join(
        f"{exc!r}: request {where(requests[first], sent_at)}; answer {where(answers[first], sent_at)}"
        for first, sent_at, exc in failed
    )


def test_redeploying_twice_under_load_answers_every_record_exactly_once(
    client: Client, stack: dict[str, Any], models: dict[str, Model]
) -> None:
    pipeline = client.build_pipeline("hot-swap").add_model_step(models["pre"])
    pipeline.add_model_step(models["swap-a"]).deploy(quiet=True)
    versions = [pipeline.status()["version"]]
    bootstrap, topics = stack["kafka_bootstrap"], pipeline.topics()
    prefix = "swap"
    sent = Sent()
    http: list[tuple[float, float, Any]] = []
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
            await reader.read_every_answer(
                {group_id("default", pipeline.name, "main"): topics["input"]}
            )
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

        failed = [outcome for outcome in http if outcome[2] != 1]
        assert http, "no HTTP inference ran during the swaps"
        assert not failed, (
            f"{len(failed)} of {len(http)} HTTP inferences failed during the swaps:\n"
            + _where_http_failures(bootstrap, topics, failed[:3])
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
