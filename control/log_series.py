"""A pipeline's recent traffic as time series, from its log rows: rows per second,
latency p50/p99, and the share of rows that failed or failed a check, per time bucket.

Log rows are timed by their request's start and carry its end-to-end latency
(`metadata.elapsed_ns`), so the log store alone answers this for any worker, local or
remote. Only complete buckets are returned: the current one is still filling.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine.columns import ANOMALY_COUNT, META_ELAPSED, META_ERROR, TIME
from streams.logstore import LogStore

COLUMNS = (TIME, META_ELAPSED, ANOMALY_COUNT, META_ERROR)


def bucket_series(
    table: pa.Table, start_ms: int, buckets: int, bucket_ms: int
) -> dict[str, list[Any]]:
    """Per bucket of `bucket_ms` from `start_ms`: its start (s since the epoch), rows/s,
    latency p50 and p99 (ms), error rate and check-failure rate (None where no rows)."""
    at = (table[TIME].cast(pa.int64()).to_numpy() - start_ms) // bucket_ms
    inside = (at >= 0) & (at < buckets)
    at = at[inside]
    rows = np.bincount(at, minlength=buckets)
    series: dict[str, list[Any]] = {
        "time": [(start_ms + i * bucket_ms) / 1000 for i in range(buckets)],
        "rows_per_s": (rows / (bucket_ms / 1000)).tolist(),
    }
    elapsed_ms = _column(table, META_ELAPSED, inside, 0).astype(np.float64) / 1e6
    failed = _column(table, ANOMALY_COUNT, inside, 0) > 0
    errors = (
        pc.is_valid(table[META_ERROR]).to_numpy(zero_copy_only=False)[inside]
        if META_ERROR in table.column_names
        else np.zeros(len(at), bool)
    )
    order = np.argsort(at, kind="stable")
    edges = np.searchsorted(at[order], np.arange(buckets + 1))
    p50: list[float | None] = []
    p99: list[float | None] = []
    error_rate: list[float | None] = []
    check_rate: list[float | None] = []
    for i in range(buckets):
        picked = order[edges[i] : edges[i + 1]]
        if not len(picked):
            for out in (p50, p99, error_rate, check_rate):
                out.append(None)
            continue
        p50.append(float(np.percentile(elapsed_ms[picked], 50)))
        p99.append(float(np.percentile(elapsed_ms[picked], 99)))
        error_rate.append(float(errors[picked].mean()))
        check_rate.append(float((failed[picked] & ~errors[picked]).mean()))
    series.update(p50_ms=p50, p99_ms=p99, error_rate=error_rate, check_failure_rate=check_rate)
    return series


def _column(table: pa.Table, name: str, inside: np.ndarray, fill: int) -> np.ndarray:
    if name not in table.column_names:
        return np.zeros(int(inside.sum()), np.int64)
    values: np.ndarray = table[name].fill_null(fill).to_numpy()[inside]
    return values


def recent_series(
    store: LogStore,
    workspace: str,
    pipeline: str,
    *,
    minutes: float,
    bucket_s: float,
    now: datetime | None = None,
) -> dict[str, list[Any]]:
    """`bucket_series` of the last `minutes`, in buckets of `bucket_s` seconds."""
    bucket_ms = max(int(bucket_s * 1000), 1)
    end_ms = int((now or datetime.now(UTC)).timestamp() * 1000) // bucket_ms * bucket_ms
    buckets = max(math.ceil(minutes * 60_000 / bucket_ms), 1)
    start_ms = end_ms - buckets * bucket_ms
    present = set(store.column_names(workspace, pipeline))
    table = store.query(
        workspace,
        pipeline,
        limit=None,
        start=datetime.fromtimestamp(start_ms / 1000, UTC),
        end=datetime.fromtimestamp(end_ms / 1000, UTC),
        columns=[c for c in COLUMNS if c in present],
    )
    return bucket_series(table, start_ms, buckets, bucket_ms)
