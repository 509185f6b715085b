"""Shadow challengers run apart from the champion; split pipelines hot-swap without loss.

Challengers run in shadow workers (their own processes, fed by one topic per
challenger), so a challenger that blocks or crashes holds back none of the
champion's answers, on the result topic or over HTTP.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from control.demo.models import diabetes_regressor
from control.sdk.client import Client
from control.sdk.model import Model
from streams.worker_spec import group_id
from tests.integration._streams import Sent, first_value, is_error, send_and_collect

pytestmark = pytest.mark.slow

BLOCKED = """
import os, time
import numpy as np
def process_data(input_data):
    while not os.path.exists({marker!r}):  # held until the test lets it go
        time.sleep(0.05)
    return {{"variable": np.full((len(input_data["tensor"]), 1), 7.0, np.float32)}}
"""
CRASHES = """
import os
def process_data(input_data):
    os._exit(3)  # the whole process dies, as on a segfault
"""


@pytest.fixture(scope="module")
def models(
    client: Client, model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("isolation")
    marker = root / "release"
    (root / "blocked.py").write_text(BLOCKED.format(marker=str(marker)))
    (root / "crashes.py").write_text(CRASHES)
    return {
        "marker": marker,
        "champion": client.upload_model("iso-champion", diabetes_regressor(root / "a.onnx")),
        "other": client.upload_model("iso-other", diabetes_regressor(root / "b.onnx", alpha=0.1)),
        "blocked": client.upload_model("iso-blocked", root / "blocked.py"),
        "crashes": client.upload_model("iso-crashes", root / "crashes.py"),
    }


def _rows(n: int) -> pd.DataFrame:
    return pd.DataFrame({"tensor": [np.full(10, 0.01 * i).tolist() for i in range(n)]})


def test_a_blocked_challenger_holds_back_no_champion_answer(
    client: Client, stack: dict[str, Any], models: dict[str, Any]
) -> None:
    pipeline = client.build_pipeline("iso-blocked").add_shadow_deploy(
        models["champion"], [models["blocked"]]
    )
    pipeline.deploy(quiet=True)
    bootstrap, topics, prefix = stack["kafka_bootstrap"], pipeline.topics(), "blocked"
    sent = Sent()

    try:
        answers = asyncio.run(
            send_and_collect(  # every answer comes while the challenger is held
                bootstrap, topics, prefix, 40, per_second=200, sent=sent
            )
        )
        for rid, replies in answers.items():
            assert len(replies) == 1 and not is_error(replies[0]), rid
            assert first_value(replies[0].batch) == int(rid.rsplit("-", 1)[1])
            assert replies[0].env.shadow is None  # Kafka callers get no challenger records
        result = pipeline.infer(_rows(3))  # waits for challengers only for shadow_wait_s
        assert len(result) == 3 and result["out.variable"].notna().all()
        assert not any(c.startswith("out_iso-blocked.") for c in result.columns)
        assert "out_iso-blocked.variable" not in pipeline.logs(limit=50).columns

        models["marker"].touch()  # let the challenger go: its rows reach the logs
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            logs = pipeline.logs(limit=1000)
            ours = logs[logs["request_id"].str.startswith(prefix + "-")]
            column = "out_iso-blocked.variable"
            if column in ours.columns and ours[column].notna().sum() == len(sent.where):
                break
            time.sleep(0.5)
        assert len(ours) == len(sent.where)
        assert all(np.asarray(v).ravel()[0] == 7.0 for v in ours["out_iso-blocked.variable"])
        result = pipeline.infer(_rows(2))  # and now infer() carries its answers too
        assert [np.asarray(v).ravel()[0] for v in result["out_iso-blocked.variable"]] == [7.0] * 2
    finally:
        models["marker"].touch()
        pipeline.undeploy()


def test_a_crashing_challenger_leaves_the_champion_serving(
    client: Client, models: dict[str, Any]
) -> None:
    reference = client.build_pipeline("iso-reference").add_model_step(models["champion"])
    reference.deploy(quiet=True)
    expected = reference.infer(_rows(5))["out.variable"]
    reference.undeploy()

    pipeline = client.build_pipeline("iso-crashes").add_shadow_deploy(
        models["champion"], [models["crashes"]]
    )
    pipeline.deploy(quiet=True)
    try:
        (main,) = [e for e in pipeline.status()["engines"] if e["role"] == "main"]
        shadow_down = False
        for _ in range(4):  # each request kills the shadow worker again
            result = pipeline.infer(_rows(5))
            np.testing.assert_allclose(
                np.stack(result["out.variable"]), np.stack(expected), rtol=1e-6
            )
            assert "out_iso-crashes.variable" not in result.columns
            engines = {e["role"]: e for e in pipeline.status()["engines"]}
            shadow_down = shadow_down or engines["shadow"]["status"] != "Running"
            assert engines["main"]["status"] == "Running"
            assert engines["main"]["pid"] == main["pid"]  # never restarted
        assert shadow_down, "the crashed shadow worker should show as not Running"
        # It re-reads the record that kills it, again and again: restarts back off. A round
        # (start, join the group, read, die) takes ~5 s alone; a loaded full run once waited
        # 40 s in vain (its last heartbeat 48 s old), so the wait is long, and the reasons
        # seen say where it stood.
        deadline = time.monotonic() + 120
        reasons: list[str] = []
        while time.monotonic() < deadline and "times in a row" not in "".join(reasons[-1:]):
            engines = {e["role"]: e for e in pipeline.status()["engines"]}
            reason = engines["shadow"]["reason"] or ""
            if reason not in reasons[-1:]:
                reasons.append(reason)
            time.sleep(0.3)
        assert "times in a row" in reasons[-1], reasons
        assert engines["main"]["status"] == "Running"
    finally:
        pipeline.undeploy()


def test_redeploying_a_split_with_new_weights_loses_no_row(
    client: Client, stack: dict[str, Any], models: dict[str, Model]
) -> None:
    pipeline = client.build_pipeline("iso-split-swap").add_random_split(
        [(1, models["champion"]), (1, models["other"])]
    )
    pipeline.deploy(quiet=True)
    bootstrap, topics, prefix = stack["kafka_bootstrap"], pipeline.topics(), "split-swap"
    sent = Sent()

    async def redeploy_with_new_weights() -> None:
        await asyncio.sleep(2)
        await asyncio.to_thread(
            lambda: pipeline.replace_with_random_split(
                0, [(3, models["champion"]), (1, models["other"])]
            ).deploy(quiet=True)
        )

    try:
        answers = asyncio.run(
            send_and_collect(
                bootstrap,
                topics,
                prefix,
                3000,
                per_second=250,
                sent=sent,
                meanwhile=redeploy_with_new_weights,
                group=group_id("default", pipeline.name, "main"),
            )
        )
        after = Sent()  # and once the redeploy is done, more records, for the new weights
        answers |= asyncio.run(
            send_and_collect(bootstrap, topics, f"{prefix}-after", 100, per_second=250, sent=after)
        )
        repeated = {rid: len(a) for rid, a in answers.items() if len(a) != 1}
        assert not repeated, f"answered more than once: {dict(list(repeated.items())[:5])}"
        assert not [rid for rid, (a,) in answers.items() if is_error(a)]
        versions = {
            a.batch.column("metadata.pipeline_version")[0].as_py() for (a,) in answers.values()
        }
        assert len(versions) == 2, "both the old and the new weights answered"
        sent.where |= after.where
        logs = pipeline.logs(limit=100_000)
        ours = logs[logs["request_id"].str.startswith(prefix + "-")]
        assert sorted(ours["request_id"]) == sorted(sent.where)
    finally:
        pipeline.undeploy()


def test_status_lists_shadow_workers_beside_the_answer_path(
    client: Client, models: dict[str, Any]
) -> None:
    pipeline = client.build_pipeline("iso-status").add_shadow_deploy(
        models["champion"], [models["other"]]
    )
    pipeline.deploy(quiet=True)
    try:
        status = pipeline.status()
        assert status["status"] == "Running"
        assert sorted(e["role"] for e in status["engines"]) == ["main", "shadow"]
        assert all(e["status"] == "Running" for e in status["engines"])
    finally:
        pipeline.undeploy()
