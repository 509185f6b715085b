"""Worker metrics: per-step counters and fixed-bucket histograms, carried in heartbeats.

A worker keeps one `WorkerMetrics` for its whole life and its loop records what
each stage did; the heartbeat carries a `snapshot()` (streams.status.WorkerStatus)
and the server renders every worker's as Prometheus series (control/server/routes/
metrics.py). Everything is cumulative since the worker started, as Prometheus
counters are: a restarted worker starts again from zero, which `rate()` handles.
Histograms have fixed buckets so that any two merge (one pipeline's workers
summed, or a console's totals).

Example (what the worker loop records):
    metrics = WorkerMetrics()
    metrics.received("step-0", records=3, rows=300)
    metrics.batch("step-0", rows=300, seconds=0.004)
    metrics.answered("step-0", rows=100, latency_s=0.012)   # x3; latency where the path ends
    metrics.failed("step-0", rows=0, dead_lettered=True)    # a message given up on
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

from pydantic import BaseModel, Field

LATENCY_BUCKETS_S: tuple[float, ...] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
"""Upper bounds of the latency histograms, in seconds (above the last: +Inf)."""
BATCH_BUCKETS_ROWS: tuple[float, ...] = tuple(float(2**i) for i in range(14))
"""Upper bounds of the micro-batch size histogram, in rows (1 ... 8192)."""


class Histogram(BaseModel):
    """Counts of observations per bucket (`bounds` are upper bounds; one more for +Inf)."""

    bounds: tuple[float, ...]
    counts: list[int] = []
    sum: float = 0.0

    def model_post_init(self, context: object) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.bounds) + 1)
        elif len(self.counts) != len(self.bounds) + 1:
            raise ValueError(
                f"a histogram of {len(self.bounds)} bounds needs "
                f"{len(self.bounds) + 1} counts, got {len(self.counts)}"
            )

    @property
    def count(self) -> int:
        return sum(self.counts)

    def observe(self, value: float, times: int = 1) -> None:
        """Count `value` (`times` times: e.g. every message of a batch waited as long)."""
        self.counts[bisect.bisect_left(self.bounds, value)] += times
        self.sum += value * times

    def merge(self, other: Histogram) -> Histogram:
        """A new histogram holding both's observations."""
        if other.bounds != self.bounds:
            raise ValueError("cannot merge histograms with different buckets")
        return Histogram(
            bounds=self.bounds,
            sum=self.sum + other.sum,
            counts=[a + b for a, b in zip(self.counts, other.counts, strict=True)],
        )

    def cumulative(self) -> list[int]:
        """Counts at or below each bound, then the total (Prometheus' `le` buckets)."""
        out, total = [], 0
        for n in self.counts:
            total += n
            out.append(total)
        return out

    def quantile(self, q: float) -> float | None:
        """The `q` quantile, interpolated within its bucket as Prometheus'
        `histogram_quantile` does (the last finite bound if it lies above it); None if empty."""
        total = self.count
        if not total:
            return None
        rank = q * total
        below = 0
        for i, n in enumerate(self.counts):
            if n and below + n >= rank:
                if i == len(self.bounds):
                    return self.bounds[-1]
                lower = self.bounds[i - 1] if i else 0.0
                return lower + (self.bounds[i] - lower) * (rank - below) / n
            below += n
        return self.bounds[-1]


def latency_histogram() -> Histogram:
    return Histogram(bounds=LATENCY_BUCKETS_S)


def batch_histogram() -> Histogram:
    return Histogram(bounds=BATCH_BUCKETS_ROWS)


class StepMetrics(BaseModel):
    """What one stage of a worker did (streams.plan names the steps)."""

    records_in: int = 0
    rows_in: int = 0
    records_answered: int = 0
    """Messages whose result it sent on (to the next step, or as the answer)."""
    rows_answered: int = 0
    records_failed: int = 0
    """Messages given up on (after their retries): answered with an error."""
    rows_failed: int = 0
    dead_lettered: int = 0
    """Failed messages also sent to the dead-letter topic."""
    retries: int = 0
    seconds: Histogram = Field(default_factory=latency_histogram)
    """Compute time of each micro-batch the stage ran."""
    batch_rows: Histogram = Field(default_factory=batch_histogram)
    """Rows of each micro-batch the stage ran."""

    def merge(self, other: StepMetrics) -> StepMetrics:
        counts = {name: getattr(self, name) + getattr(other, name) for name in COUNTERS}
        return StepMetrics(
            **counts,
            seconds=self.seconds.merge(other.seconds),
            batch_rows=self.batch_rows.merge(other.batch_rows),
        )


COUNTERS = tuple(
    name for name, info in StepMetrics.model_fields.items() if info.annotation in (int, "int")
)


class WorkerMetrics(BaseModel):
    """One worker's metrics by stage, and its requests' end-to-end latency."""

    steps: dict[str, StepMetrics] = {}
    end_to_end: Histogram = Field(default_factory=latency_histogram)
    """From a request's start (its input record's timestamp, or the gateway's stamp) to its
    answer being sent, for each message a path's last stage answered."""

    def step(self, name: str) -> StepMetrics:
        found = self.steps.get(name)
        if found is None:
            found = self.steps[name] = StepMetrics()
        return found

    # -- what the worker loop records ------------------------------------------------------
    def received(self, step: str, records: int, rows: int) -> None:
        """Records a stage read (decoded or not) and their rows."""
        metrics = self.step(step)
        metrics.records_in += records
        metrics.rows_in += rows

    def batch(self, step: str, rows: int, seconds: float) -> None:
        """One micro-batch a stage computed: its rows and how long it took."""
        metrics = self.step(step)
        metrics.batch_rows.observe(rows)
        metrics.seconds.observe(seconds)

    def answered(self, step: str, rows: int, latency_s: float | None = None) -> None:
        """One message whose result a stage sent on; `latency_s` (end to end) where that
        result is the request's answer."""
        metrics = self.step(step)
        metrics.records_answered += 1
        metrics.rows_answered += rows
        if latency_s is not None:
            self.end_to_end.observe(latency_s)

    def failed(self, step: str, rows: int, *, dead_lettered: bool) -> None:
        """One message a stage gave up on."""
        metrics = self.step(step)
        metrics.records_failed += 1
        metrics.rows_failed += rows
        metrics.dead_lettered += int(dead_lettered)

    def retried(self, step: str, times: int = 1) -> None:
        self.step(step).retries += times

    # -- reading -------------------------------------------------------------------------
    def snapshot(self) -> WorkerMetrics:
        """A copy, safe to take from the heartbeat thread while the loop records."""
        steps = dict(self.steps)  # one C-level copy: the loop may add a stage meanwhile
        return WorkerMetrics(
            steps={name: m.model_copy(deep=True) for name, m in steps.items()},
            end_to_end=self.end_to_end.model_copy(deep=True),
        )

    def merge(self, other: WorkerMetrics) -> WorkerMetrics:
        """Both workers' metrics, step by step (e.g. a pipeline's replicas)."""
        steps = dict(self.steps)
        for name, metrics in other.steps.items():
            steps[name] = steps[name].merge(metrics) if name in steps else metrics
        return WorkerMetrics(steps=steps, end_to_end=self.end_to_end.merge(other.end_to_end))


def merged(metrics: Sequence[WorkerMetrics]) -> WorkerMetrics:
    """Many workers' metrics as one."""
    total = WorkerMetrics()
    for one in metrics:
        total = total.merge(one)
    return total
