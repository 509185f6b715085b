"""Benchmark of the log store: ingest rate, compaction time and query latencies.

Builds the logs of a 10-feature model (``in.tensor`` fixed_size_list<float>[10], ``out.variable``
fixed_size_list<float>[1], about 1% invalid rows, times spread over 24 hours) in batches of
10,000 rows, then prints a table and saves ``bench/results/logstore-<UTC timestamp>.json``.
With ``--hour-passes N`` it also fills one hour a minute at a time (``--rows`` rows a minute)
and gives the CPU of each compaction pass, as the server's compactor runs every minute in
the process that serves requests.

    .venv/bin/python bench/bench_logstore.py --rows 1000000
    .venv/bin/python bench/bench_logstore.py --rows 2000000 --hour-passes 5
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._results import save  # noqa: E402
from streams.logstore import LogStore  # noqa: E402

WS, PIPE = "bench", "ccfraud"
BATCH_ROWS = 10_000
FEATURES = 10
ROWS_PER_REQUEST = 10
SPAN = timedelta(hours=24)
START = datetime(2025, 1, 1, tzinfo=UTC)
TARGETS = {"ingest_rows_per_s_min": 100_000, "query_ms_max": 200.0}
TIME_TYPE = pa.timestamp("ms", "UTC")


def make_batches(
    rows: int, seed: int = 7, *, first: int = 0, start: datetime = START, span: timedelta = SPAN
) -> list[pa.RecordBatch]:
    """The log batches, in arrival (time) order; requests numbered from `first` // 10."""
    rng = np.random.default_rng(seed)
    start_ms = int(start.timestamp() * 1000)
    step_ms = span.total_seconds() * 1000 / rows
    batches = []
    for lo in range(0, rows, BATCH_ROWS):
        n = min(BATCH_ROWS, rows - lo)
        index = np.arange(first + lo, first + lo + n)
        invalid = rng.random(n) < 0.01
        features = rng.standard_normal(n * FEATURES).astype(np.float32)
        batches.append(
            pa.RecordBatch.from_pydict(
                {
                    "time": pa.array(
                        start_ms + ((index - first) * step_ms).astype(np.int64), TIME_TYPE
                    ),
                    "request_id": pa.array([f"req-{i // ROWS_PER_REQUEST:08d}" for i in index]),
                    "row": pa.array(index % ROWS_PER_REQUEST, pa.int32()),
                    "anomaly.count": pa.array(invalid.astype(np.int32)),
                    "check_failures": pa.array(invalid.astype(np.int32)),
                    "metadata.pipeline_version": pa.array(["v1"] * n),
                    "metadata.elapsed_ns": pa.array(rng.integers(50_000, 500_000, n)),
                    "metadata.model": pa.array(["ccfraud"] * n),
                    "in.tensor": pa.FixedSizeListArray.from_arrays(pa.array(features), FEATURES),
                    "out.variable": pa.FixedSizeListArray.from_arrays(
                        pa.array(rng.random(n).astype(np.float32)), 1
                    ),
                    "anomaly.fraud": pa.array(invalid),
                }
            )
        )
    return batches


def median_ms(run: Callable[[], pa.Table], repeats: int = 5) -> float:
    timings = []
    for _ in range(repeats):
        began = time.perf_counter()
        run()
        timings.append((time.perf_counter() - began) * 1000)
    return statistics.median(timings)


def query_latencies(store: LogStore) -> dict[str, float]:
    hour = START + timedelta(hours=12)
    return {
        "limit_100": median_ms(lambda: store.query(WS, PIPE, limit=100)),
        "invalid_limit_100": median_ms(lambda: store.query(WS, PIPE, limit=100, valid=False)),
        "one_hour_limit_100": median_ms(
            lambda: store.query(WS, PIPE, limit=100, start=hour, end=hour + timedelta(hours=1))
        ),
    }


def run(rows: int, root: Path) -> dict[str, object]:
    batches = make_batches(rows)
    store = LogStore(root)
    began = time.perf_counter()
    for batch in batches:
        store.append(WS, PIPE, batch)
    ingest_s = time.perf_counter() - began
    before = query_latencies(store)
    began = time.perf_counter()
    report = store.compact(WS, PIPE)
    compaction_s = time.perf_counter() - began
    after = query_latencies(store)
    stored_bytes = sum(f.stat().st_size for f in (root / WS / PIPE).rglob("*.parquet"))
    worst_query = max(*before.values(), *after.values())
    ingest_rate = rows / ingest_s
    return {
        "rows": rows,
        "batch_rows": BATCH_ROWS,
        "ingest_rows_per_s": round(ingest_rate),
        "ingest_s": round(ingest_s, 3),
        "compaction_s": round(compaction_s, 3),
        "files_before_compaction": report.files_before,
        "files_after_compaction": report.files_after,
        "stored_bytes": stored_bytes,
        "query_ms_median_of_5": {
            "before_compaction": {k: round(v, 2) for k, v in before.items()},
            "after_compaction": {k: round(v, 2) for k, v in after.items()},
        },
        "targets": TARGETS,
        "meets_targets": ingest_rate >= TARGETS["ingest_rows_per_s_min"]
        and worst_query <= TARGETS["query_ms_max"],
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "pyarrow": pa.__version__,
        },
    }


def hour_passes(rows: int, passes: int, root: Path) -> list[dict[str, float]]:
    """One hour filled a minute at a time, `rows` rows a minute, compacted after each
    minute: each pass's CPU (this process, pyarrow's threads included) and wall time."""
    store = LogStore(root)
    out = []
    for minute in range(passes):
        start = START + timedelta(minutes=minute)
        for batch in make_batches(
            rows, first=minute * rows, start=start, span=timedelta(minutes=1)
        ):
            store.append(WS, PIPE, batch)
        cpu, began = time.process_time(), time.perf_counter()
        report = store.compact(WS, PIPE)
        out.append(
            {
                "rows_in_hour": report.rows_after,
                "cpu_s": round(time.process_time() - cpu, 2),
                "wall_s": round(time.perf_counter() - began, 2),
            }
        )
        print(f"compaction pass {minute + 1}: {out[-1]}", flush=True)
    return out


def print_table(result: dict[str, object]) -> None:
    queries = result["query_ms_median_of_5"]
    assert isinstance(queries, dict)
    print(f"rows                 {result['rows']:>12,}")
    print(f"ingest rows/s        {result['ingest_rows_per_s']:>12,}   (target >= 100,000)")
    print(
        f"compaction s         {result['compaction_s']:>12}   "
        f"({result['files_before_compaction']} -> {result['files_after_compaction']} files)"
    )
    print(f"{'query (median ms)':<22}{'before':>10}{'after':>10}   (target <= 200 ms)")
    for name in queries["before_compaction"]:
        before, after = queries["before_compaction"][name], queries["after_compaction"][name]
        print(f"  {name:<20}{before:>10}{after:>10}")
    print(f"meets targets        {result['meets_targets']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="log rows to ingest")
    parser.add_argument("--dir", type=Path, help="store directory (default: a temporary one)")
    parser.add_argument(
        "--hour-passes", type=int, default=0, help="then fill one hour over this many minutes"
    )
    args = parser.parse_args()
    root = args.dir or Path(tempfile.mkdtemp(prefix="weir-logstore-bench-"))
    try:
        result = run(args.rows, root)
        if args.hour_passes:
            result["hour_passes"] = hour_passes(args.rows, args.hour_passes, root / "hour")
    finally:
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)
    print_table(result)
    print(f"saved {save('logstore', result)}")


if __name__ == "__main__":
    main()
