"""A/B splits and shadow deployments on the real stack (the guide's "A/B Testing")."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from control.demo.models import diabetes_regressor
from control.sdk.client import Client
from tests.integration._deployed import deployed

pytestmark = pytest.mark.slow

RNG = np.random.default_rng(11)
X = RNG.random((1000, 10), dtype=np.float32)

HALVE = """
import numpy as np
def process_data(input_data):
    return {"float_input": (input_data["tensor"] * 0.5).astype(np.float32)}
"""
RESCALE = """
import numpy as np
def process_data(input_data):
    return {"float_input": (input_data["float_input"] * 2.0).astype(np.float32)}
"""
BROKEN = """
def process_data(input_data):
    raise RuntimeError("challenger always fails")
"""


@pytest.fixture(scope="module")
def models(client: Client, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("experiments")
    (root / "halve.py").write_text(HALVE)
    (root / "broken.py").write_text(BROKEN)
    (root / "rescale.py").write_text(RESCALE)
    return {
        "control": client.upload_model(
            "aloha-control", diabetes_regressor(root / "c.onnx", alpha=1.0)
        ),
        "challenger": client.upload_model(
            "aloha-challenger", diabetes_regressor(root / "d.onnx", alpha=0.1)
        ),
        "third": client.upload_model(
            "aloha-third", diabetes_regressor(root / "e.onnx", alpha=0.01)
        ),
        "halve": client.upload_model("halve", root / "halve.py"),
        "rescale": client.upload_model("rescale", root / "rescale.py"),
        "broken": client.upload_model("broken", root / "broken.py"),
    }


def _chosen(frame: pd.DataFrame) -> list[str]:
    return [json.loads(s)[-1]["name"] for s in frame["out._model_split"]]


def _frame(rows: np.ndarray, **extra: list[Any]) -> pd.DataFrame:
    return pd.DataFrame({"tensor": [r.tolist() for r in rows], **extra})


def test_weighted_split_two_to_one(client: Client, models: dict[str, Any]) -> None:
    pipeline = client.build_pipeline("split-weighted").add_random_split(
        [(2, models["control"]), (1, models["challenger"])]
    )
    with deployed(pipeline):
        counts: Counter[str] = Counter()
        for _ in range(10):  # 10,000 rows
            result = pipeline.infer(_frame(X))
            assert list(result["metadata.row"]) == list(range(len(X)))  # input order
            counts.update(_chosen(result))
        share = counts["aloha-control"] / sum(counts.values())
        assert abs(share - 2 / 3) < 0.02, counts
        logs = pipeline.logs(limit=20)
        split = json.loads(logs["out._model_split"].iloc[0])
        assert set(split[0]) == {"name", "version", "sha"}
        summary = pipeline.experiment_summary()
        assert set(summary["models"]) == {"aloha-control", "aloha-challenger"}
        assert (
            summary["models"]["aloha-control"]["rows"]
            > summary["models"]["aloha-challenger"]["rows"]
        )
        assert "variable" in summary["models"]["aloha-control"]["outputs"]


def test_hash_key_keeps_each_key_on_one_model_across_redeploys(
    client: Client, models: dict[str, Any]
) -> None:
    pipeline = client.build_pipeline("split-hashed").add_random_split(
        [(1, models["control"]), (1, models["challenger"])], hash_key="customer"
    )
    with deployed(pipeline):
        keys = [f"customer-{i % 50}" for i in range(200)]
        first = _chosen(pipeline.infer(_frame(X[:200], customer=keys)))
    with deployed(pipeline):
        second = _chosen(pipeline.infer(_frame(X[:200], customer=keys)))
        assert first == second
        by_key: dict[str, set[str]] = {}
        for key, model in zip(keys, first):
            by_key.setdefault(key, set()).add(model)
        assert all(len(v) == 1 for v in by_key.values()) and len(set(first)) == 2


def test_three_way_split_of_chains_inside_a_longer_pipeline(
    client: Client, models: dict[str, Any]
) -> None:
    rescale = models["rescale"]
    pipeline = (
        client.build_pipeline("split-chains")
        .add_model_step(models["halve"])
        .add_random_split(
            [
                (1, [rescale, models["control"]]),
                (1, [rescale, models["challenger"]]),
                (1, [rescale, models["third"]]),
            ]
        )
    )
    assert "random_split" in pipeline.steps()[1].name
    with deployed(pipeline):
        result = pipeline.infer(_frame(X[:300]))
        assert set(_chosen(result)) == {"aloha-control", "aloha-challenger", "aloha-third"}
        assert result["out.variable"].notna().all()


def test_bad_split_input_is_refused_when_added(client: Client, models: dict[str, Any]) -> None:
    pipeline = client.build_pipeline("split-bad")
    for bad in ([], [(0, models["control"])], [(-1, models["control"])], [(1, "not-a-model")]):
        with pytest.raises(ValueError):
            pipeline.add_random_split(bad)  # type: ignore[arg-type]


def test_shadow_deploy_answers_with_the_champion_and_logs_challengers(
    client: Client, models: dict[str, Any], diabetes_onnx: Path
) -> None:
    champion_only = client.build_pipeline("shadow-reference").add_model_step(models["control"])
    with deployed(champion_only):
        expected = champion_only.infer(_frame(X[:20]))["out.variable"]

    pipeline = client.build_pipeline("shadow-demo").add_shadow_deploy(
        models["control"], [models["challenger"], models["broken"]]
    )
    with deployed(pipeline):
        result = pipeline.infer(_frame(X[:20]))
        np.testing.assert_allclose(np.stack(result["out.variable"]), np.stack(expected), rtol=1e-6)
        logs = _with_challenger_rows(
            pipeline, 20, ["out_aloha-challenger.variable", "out_broken.error"]
        )
        assert "out_aloha-challenger.variable" in logs.columns
        assert logs["out_aloha-challenger.variable"].notna().all()
        assert logs["out_broken.error"].str.contains("challenger always fails").all()
        summary = pipeline.experiment_summary()
        assert summary["models"]["aloha-control"]["rows"] >= 20
        challenger, broken = summary["shadows"]["aloha-challenger"], summary["shadows"]["broken"]
        assert challenger["rows"] >= 20 and challenger["errors"] == 0
        assert challenger["vs_champion"], "how the challenger's outputs differ from the champion's"
        assert broken["errors"] >= 20


def _with_challenger_rows(
    pipeline: Any, rows: int, columns: list[str], wait_s: float = 30.0
) -> pd.DataFrame:
    """The newest `rows` log rows once each has every challenger's `columns`: infer() waits
    WEIR_SHADOW_WAIT_S for the challengers at most, and their rows may land after."""
    deadline = time.monotonic() + wait_s
    while True:
        logs = pipeline.logs(limit=rows)
        if all(c in logs.columns and logs[c].notna().all() for c in columns):
            return logs
        if time.monotonic() > deadline:
            return logs
        time.sleep(0.5)
