"""engine/experiments.py: per-model figures from log rows."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from engine.experiments import experiment_summary


def _split(name: str) -> str:
    return json.dumps([{"name": name, "version": "v", "sha": "s"}])


def test_split_models_get_rows_latency_failures_and_outputs() -> None:
    primary = pa.table(
        {
            "out._model_split": [_split("a"), _split("a"), _split("b"), _split("a")],
            "out.y": pa.array([[1.0], [3.0], [10.0], [5.0]], pa.list_(pa.float64(), 1)),
            "metadata.elapsed_ns": [1_000_000, 2_000_000, 4_000_000, 3_000_000],
            "anomaly.count": pa.array([0, 1, 0, 0], pa.int32()),
            "metadata.model": ["a@1", "a@1", "b@1", "a@1"],
        }
    )
    summary = experiment_summary(primary)
    a, b = summary["models"]["a"], summary["models"]["b"]
    assert (a["rows"], b["rows"]) == (3, 1)
    assert a["share"] == pytest.approx(0.75)
    assert a["latency_ms"]["mean"] == pytest.approx(2.0)
    assert a["check_failure_rate"] == pytest.approx(1 / 3)
    assert a["outputs"]["y"]["mean"] == pytest.approx(3.0)
    assert a["outputs"]["y"]["std"] == pytest.approx(np.std([1.0, 3.0, 5.0]))


def test_shadows_compare_with_the_champion_on_the_same_rows() -> None:
    primary = pa.table(
        {
            "out.y": [1.0, 2.0, 3.0, 4.0],
            "out_c.y": [1.0, 2.5, None, 4.0],
            "metadata.elapsed_ns": [1, 1, 1, 1],
            "metadata.model": ["a@1"] * 4,
        }
    )
    shadows = pa.table(
        {
            "metadata.shadow": ["c", "c", "c", "c"],
            "out_c.y": [1.0, 2.5, None, 4.0],
            "metadata.error": [None, None, "boom", None],
            "metadata.elapsed_ns": [2, 2, 2, 2],
        }
    )
    versus = experiment_summary(primary, shadows)["shadows"]["c"]
    assert versus["rows"] == 4 and versus["errors"] == 1
    assert versus["vs_champion"]["y"] == {
        "compared": 3,
        "differ_rate": pytest.approx(1 / 3),
        "mean_abs_diff": pytest.approx(0.5 / 3),
        "max_abs_diff": pytest.approx(0.5),
    }


def test_no_rows_is_an_empty_summary() -> None:
    assert experiment_summary(pa.table({"out.y": pa.array([], pa.float64())})) == {
        "rows": 0,
        "models": {},
        "shadows": {},
    }


def test_failed_rows_of_a_split_count_apart_and_have_no_outputs() -> None:
    """A failed request's rows have no split choice and null outputs (they were a 500)."""
    primary = pa.table(
        {
            "out._model_split": [_split("a"), None],
            "out.y": pa.array([[1.0], None], pa.list_(pa.float64(), 1)),
            "metadata.elapsed_ns": [1, 1],
            "anomaly.count": pa.array([0, 1], pa.int32()),
            "metadata.model": ["a@1", ""],
        }
    )
    models = experiment_summary(primary)["models"]
    assert models["unknown"]["rows"] == 1 and models["unknown"]["outputs"] == {}
    assert models["a"]["outputs"]["y"]["mean"] == 1.0
