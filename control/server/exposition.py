"""What `/metrics` exposes, as Prometheus metric families: workers' heartbeats (their
WorkerMetrics), consumer lag, restarts, the log store and the server's HTTP requests.

Every worker series carries `workspace`, `pipeline`, `version`, `worker` and `role`
labels, and step series a `step` label too (streams.plan names the steps): counters
restart from zero with a restarted worker, which Prometheus' `rate()` expects; sum
them by pipeline or step for totals.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from control.pipeline_lag import PartitionLag
from streams.metrics import COUNTERS, Histogram
from streams.status import WorkerStatus

WORKER_LABELS = ["workspace", "pipeline", "version", "worker", "role"]
STEP_HELP = {
    "records_in": "Records a step read",
    "rows_in": "Rows of the records a step read",
    "records_answered": "Records whose result a step sent on (to the next step, or as the answer)",
    "rows_answered": "Rows a step sent on",
    "records_failed": "Records a step gave up on after their retries (answered with an error)",
    "rows_failed": "Rows of the records a step gave up on",
    "dead_lettered": "Failed records a step sent to the dead-letter topic",
    "retries": "Retries of failed records",
}


@dataclass
class PipelineFacts:
    """What the server knows of one deployed pipeline at scrape time."""

    workspace: str
    pipeline: str
    workers: list[WorkerStatus]
    restarts: dict[str, int] = field(default_factory=dict)
    """Restarts of each worker this server started, by worker id."""
    lag: list[PartitionLag] = field(default_factory=list)


@dataclass
class StoreUsage:
    """One log store of a pipeline: its primary rows, or one shadow challenger's."""

    workspace: str
    pipeline: str
    challenger: str
    rows: int
    bytes: int


def buckets(histogram: Histogram) -> list[tuple[str, float]]:
    """A histogram's cumulative `le` buckets as Prometheus writes them."""
    bounds = [*(f"{b:g}" for b in histogram.bounds), "+Inf"]
    return list(zip(bounds, map(float, histogram.cumulative()), strict=True))


class WeirCollector:
    """Metric families from facts gathered for one scrape (prometheus_client's Collector)."""

    def __init__(
        self,
        pipelines: Sequence[PipelineFacts],
        stores: Sequence[StoreUsage],
        http: Iterator[Metric],
    ) -> None:
        self.pipelines, self.stores, self.http = pipelines, stores, http

    def collect(self) -> Iterator[Metric]:
        yield from self.http
        deployed = GaugeMetricFamily("weir_deployed_pipelines", "Pipelines deployed now")
        deployed.add_metric([], len(self.pipelines))
        yield deployed
        yield from self._workers()
        yield from self._steps()
        yield from self._lag()
        yield from self._stores()

    def _workers(self) -> Iterator[Metric]:
        running = GaugeMetricFamily(
            "weir_worker_running", "1 while a worker reports Running", labels=WORKER_LABELS
        )
        processed = CounterMetricFamily(
            "weir_worker_messages_processed",
            "Messages a worker's stages answered (all steps)",
            labels=WORKER_LABELS,
        )
        failed = CounterMetricFamily(
            "weir_worker_messages_failed",
            "Messages a worker's stages gave up on (all steps)",
            labels=WORKER_LABELS,
        )
        restarts = CounterMetricFamily(
            "weir_worker_restarts",
            "Times the server restarted a worker process that died",
            labels=WORKER_LABELS,
        )
        latency = HistogramMetricFamily(
            "weir_request_seconds",
            "End to end: from a request's start to its answer being sent",
            labels=WORKER_LABELS,
        )
        for facts in self.pipelines:
            for worker in facts.workers:
                labels = _worker_labels(worker)
                running.add_metric(labels, int(worker.status == "Running"))
                processed.add_metric(labels, worker.processed)
                failed.add_metric(labels, worker.failed)
                latency.add_metric(
                    labels, buckets(worker.metrics.end_to_end), worker.metrics.end_to_end.sum
                )
                if worker.worker_id in facts.restarts:
                    restarts.add_metric(labels, facts.restarts[worker.worker_id])
        yield from (running, processed, failed, restarts, latency)

    def _steps(self) -> Iterator[Metric]:
        labels = [*WORKER_LABELS, "step"]
        counters = {
            name: CounterMetricFamily(f"weir_step_{name}", STEP_HELP[name], labels=labels)
            for name in COUNTERS
        }
        seconds = HistogramMetricFamily(
            "weir_step_seconds", "Compute time of each micro-batch a step ran", labels=labels
        )
        rows = HistogramMetricFamily(
            "weir_step_batch_rows", "Rows of each micro-batch a step ran", labels=labels
        )
        for facts in self.pipelines:
            for worker in facts.workers:
                for step, metrics in sorted(worker.metrics.steps.items()):
                    values = [*_worker_labels(worker), step]
                    for name, family in counters.items():
                        family.add_metric(values, getattr(metrics, name))
                    seconds.add_metric(values, buckets(metrics.seconds), metrics.seconds.sum)
                    rows.add_metric(values, buckets(metrics.batch_rows), metrics.batch_rows.sum)
        yield from counters.values()
        yield from (seconds, rows)

    def _lag(self) -> Iterator[Metric]:
        lag = GaugeMetricFamily(
            "weir_consumer_lag",
            "Records of a partition its consumer group has not committed",
            labels=["workspace", "pipeline", "group", "topic", "partition"],
        )
        for facts in self.pipelines:
            for p in facts.lag:
                lag.add_metric(
                    [facts.workspace, facts.pipeline, p.group, p.topic, str(p.partition)], p.lag
                )
        yield lag

    def _stores(self) -> Iterator[Metric]:
        labels = ["workspace", "pipeline", "challenger"]
        rows = GaugeMetricFamily(
            "weir_logstore_rows",
            "Rows in the log store (a repeat counts until compaction)",
            labels=labels,
        )
        size = GaugeMetricFamily(
            "weir_logstore_bytes", "Bytes of the log store's files", labels=labels
        )
        for store in self.stores:
            values = [store.workspace, store.pipeline, store.challenger]
            rows.add_metric(values, store.rows)
            size.add_metric(values, store.bytes)
        yield from (rows, size)


def _worker_labels(worker: WorkerStatus) -> list[str]:
    return [worker.workspace, worker.pipeline, worker.version, worker.worker_id, worker.role]
