"""control/log_series.py: a pipeline's recent traffic per time bucket, from its log rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from control.log_series import bucket_series, recent_series
from streams.logstore import LogStore

T0_MS = 1_700_000_000_000


def _rows(
    offsets_ms: list[int], elapsed_ms: list[float], anomalies: list[int], errors: list[str | None]
) -> pa.Table:
    return pa.table(
        {
            "time": pa.array([T0_MS + o for o in offsets_ms], pa.timestamp("ms", "UTC")),
            "metadata.elapsed_ns": pa.array([int(e * 1e6) for e in elapsed_ms], pa.int64()),
            "anomaly.count": pa.array(anomalies, pa.int32()),
            "metadata.error": pa.array(errors, pa.string()),
        }
    )


def test_buckets_give_rates_percentiles_and_failure_shares() -> None:
    table = _rows(
        [0, 100, 200, 900, 2500, 9000],
        [1, 2, 3, 10, 5, 7],
        [0, 1, 0, 1, 0, 0],
        [None, None, None, "boom", None, None],
    )
    series = bucket_series(table, T0_MS, buckets=3, bucket_ms=1000)
    assert series["time"] == [T0_MS / 1000, T0_MS / 1000 + 1, T0_MS / 1000 + 2]
    assert series["rows_per_s"] == [4.0, 0.0, 1.0]  # the row at 9 s is outside
    assert series["p50_ms"][0] == pytest.approx(2.5)
    assert series["p99_ms"][0] == pytest.approx(9.79)
    assert series["error_rate"] == [0.25, None, 0.0]
    assert series["check_failure_rate"] == [0.25, None, 0.0]  # an error is not a check failure
    assert series["p50_ms"][1] is None


def test_recent_series_reads_only_complete_buckets_of_the_window(tmp_path: Path) -> None:
    store = LogStore(tmp_path)
    now = datetime(2024, 5, 1, 10, 0, 25, 500_000, tzinfo=UTC)
    times = [now - timedelta(seconds=s) for s in (0.2, 7, 12, 16, 100)]
    store.append(
        "ws",
        "p",
        pa.table(
            {
                "time": pa.array(times, pa.timestamp("ms", "UTC")),
                "request_id": [f"r{i}" for i in range(5)],
                "row": pa.array([0] * 5, pa.int32()),
                "anomaly.count": pa.array([0] * 5, pa.int32()),
                "check_failures": pa.array([0] * 5, pa.int32()),
                "metadata.pipeline_version": ["v"] * 5,
                "metadata.elapsed_ns": pa.array([1] * 5),
                "metadata.model": ["m"] * 5,
            }
        ),
    )
    series = recent_series(store, "ws", "p", minutes=0.5, bucket_s=10, now=now)
    # The bucket holding `now` is still filling: the window is 09:59:50-10:00:20.
    start = datetime(2024, 5, 1, 9, 59, 50, tzinfo=UTC)
    assert series["time"] == [(start + timedelta(seconds=s)).timestamp() for s in (0, 10, 20)]
    assert series["rows_per_s"] == [0.0, 0.1, 0.2]
    assert series["error_rate"] == [None, 0.0, 0.0]  # no error column logged: none failed
