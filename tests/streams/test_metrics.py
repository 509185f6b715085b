"""WorkerMetrics: counters and fixed-bucket histograms that merge and travel in heartbeats."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest

from streams.metrics import Histogram, WorkerMetrics, latency_histogram, merged
from streams.status import WorkerStatus


def test_histogram_buckets_are_upper_bounds_and_sum_adds_up() -> None:
    h = Histogram(bounds=(1.0, 2.0, 5.0))
    for value in (0.5, 1.0, 1.5, 5.0, 7.0):
        h.observe(value)
    h.observe(2.0, times=3)
    assert h.counts == [2, 4, 1, 1]  # a value equal to a bound is in that bucket (le)
    assert h.cumulative() == [2, 6, 7, 8]
    assert h.count == 8
    assert h.sum == pytest.approx(0.5 + 1.0 + 1.5 + 5.0 + 7.0 + 6.0)


def test_quantiles_interpolate_within_the_bucket_like_prometheus() -> None:
    h = Histogram(bounds=(1.0, 2.0, 4.0))
    assert h.quantile(0.5) is None
    for _ in range(10):
        h.observe(1.5)  # all in (1, 2]
    assert h.quantile(0.5) == pytest.approx(1.5)
    assert h.quantile(0.99) == pytest.approx(1.99)
    h.observe(100.0, times=90)  # now the p50 lies above the last bound
    assert h.quantile(0.5) == 4.0


def test_histograms_merge_only_with_the_same_buckets() -> None:
    a, b = latency_histogram(), latency_histogram()
    a.observe(0.003)
    b.observe(0.003, times=2)
    b.observe(3.0)
    both = a.merge(b)
    assert both.count == 4 and both.sum == pytest.approx(3.009)
    assert a.count == 1  # merge makes a new one
    with pytest.raises(ValueError, match="different buckets"):
        a.merge(Histogram(bounds=(1.0,)))
    with pytest.raises(ValueError, match="needs 2 counts"):
        Histogram(bounds=(1.0,), counts=[1, 2, 3])


def _record(metrics: WorkerMetrics, rows: int) -> None:
    metrics.received("step-0", records=2, rows=2 * rows)
    metrics.batch("step-0", rows=2 * rows, seconds=0.002)
    metrics.answered("step-0", rows=rows, latency_s=0.02)
    metrics.failed("step-0", rows=rows, dead_lettered=True)
    metrics.retried("step-0", 2)


def test_recording_counts_rows_and_messages_apart() -> None:
    metrics = WorkerMetrics()
    _record(metrics, rows=100)
    metrics.answered("step-1", rows=100)  # a step that does not end the path
    step = metrics.steps["step-0"]
    assert (step.records_in, step.rows_in) == (2, 200)
    assert (step.records_answered, step.rows_answered) == (1, 100)
    assert (step.records_failed, step.rows_failed, step.dead_lettered) == (1, 100, 1)
    assert step.retries == 2
    assert step.batch_rows.count == 1 and step.batch_rows.sum == 200
    assert step.seconds.count == 1
    assert metrics.end_to_end.count == 1  # only where a latency was given
    assert metrics.steps["step-1"].rows_answered == 100


def test_workers_merge_step_by_step() -> None:
    a, b = WorkerMetrics(), WorkerMetrics()
    _record(a, rows=10)
    _record(b, rows=30)
    b.answered("step-1", rows=5)
    total = merged([a, b])
    assert total.steps["step-0"].rows_in == 80
    assert total.steps["step-0"].batch_rows.count == 2
    assert total.steps["step-1"].rows_answered == 5
    assert total.end_to_end.count == 2
    assert a.steps["step-0"].rows_in == 20  # the parts are unchanged


def test_metrics_travel_in_the_heartbeat() -> None:
    metrics = WorkerMetrics()
    _record(metrics, rows=7)
    status = WorkerStatus(
        worker_id="w",
        workspace="default",
        pipeline="p",
        version="v",
        replica=0,
        pid=1,
        host="h",
        status="Running",
        time=datetime.now(UTC),
        metrics=metrics.snapshot(),
    )
    back = WorkerStatus.model_validate_json(status.model_dump_json())
    assert back.metrics == metrics
    assert back.metrics.steps["step-0"].seconds.bounds == metrics.steps["step-0"].seconds.bounds
    old = WorkerStatus.model_validate_json(status.model_dump_json(exclude={"metrics"}))
    assert old.metrics == WorkerMetrics()  # a heartbeat from an older worker has none


def test_a_snapshot_is_a_copy_and_can_be_taken_while_stages_are_added() -> None:
    metrics = WorkerMetrics()
    stop = threading.Event()

    def record() -> None:
        i = 0
        while not stop.is_set():
            metrics.answered(f"step-{i % 500}", rows=1, latency_s=0.001)
            i += 1

    writer = threading.Thread(target=record)
    writer.start()
    try:
        for _ in range(200):
            snap = metrics.snapshot()
            snap.model_dump_json()
    finally:
        stop.set()
        writer.join()
    snap = metrics.snapshot()
    snap.answered("step-0", rows=1)
    assert snap.steps["step-0"].records_answered == metrics.steps["step-0"].records_answered + 1
