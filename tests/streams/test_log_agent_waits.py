"""streams/log_agent.py without a broker: the log agent's fetch waits."""

from __future__ import annotations

from streams.log_agent import LEAST_FETCH_WAITS_MS, paced
from streams.settings import WAKING_FETCH_WAIT_MS, WorkerSettings

WAITS = ("busy_fetch_wait_ms", "fetch_wait_ms", "idle_fetch_wait_ms")


def test_the_log_agent_never_fetches_with_a_workers_short_waits() -> None:
    settings = WorkerSettings(fetch_wait_ms=5, busy_fetch_wait_ms=1, idle_fetch_wait_ms=100)
    waits = paced(settings)
    assert {name: getattr(waits, name) for name in WAITS} == LEAST_FETCH_WAITS_MS
    assert waits.idle_fetch_wait_ms > settings.idle_fetch_wait_ms  # idle on Tansu: fewer fetches
    assert waits.idle_after_s == settings.idle_after_s  # the rest is the workers'


def test_longer_waits_are_kept() -> None:
    long = {name: WAKING_FETCH_WAIT_MS + 1 for name in WAITS}  # e.g. Apache Kafka's
    waits = paced(WorkerSettings(**long))  # type: ignore[arg-type]
    assert {name: getattr(waits, name) for name in WAITS} == long
