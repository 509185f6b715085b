"""streams/clients.py without a broker: the fetch wait."""

from __future__ import annotations

import time

from streams.clients import FetchPace
from streams.settings import WorkerSettings


class _Fetcher:
    _fetch_max_wait_ms = 0


class _Consumer:
    _fetcher = _Fetcher()


def test_the_fetch_wait_is_short_while_records_flow_and_long_once_idle() -> None:
    consumer = _Consumer()
    pace = FetchPace(
        consumer,
        WorkerSettings(  # type: ignore[arg-type]
            fetch_wait_ms=5,
            busy_fetch_wait_ms=1,
            busy_for_ms=50,
            idle_fetch_wait_ms=80,
            idle_after_s=0.2,
        ),
    )
    pace.saw(False)  # just started: counts as after a record
    assert consumer._fetcher._fetch_max_wait_ms == 1
    time.sleep(0.06)
    pace.saw(False)
    assert consumer._fetcher._fetch_max_wait_ms == 5
    pace.saw(True)
    assert consumer._fetcher._fetch_max_wait_ms == 1
    pace.saw(False)  # just after a record: still busy
    assert consumer._fetcher._fetch_max_wait_ms == 1
    time.sleep(0.25)
    pace.saw(False)  # idle for long: the longest wait
    assert consumer._fetcher._fetch_max_wait_ms == 80
    pace.saw(True)
    assert consumer._fetcher._fetch_max_wait_ms == 1


def test_aiokafka_still_reads_the_fetch_wait_where_the_pace_sets_it() -> None:
    import inspect

    from aiokafka.consumer.fetcher import Fetcher

    assert "self._fetch_max_wait_ms" in inspect.getsource(Fetcher)
