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
    pace = FetchPace(consumer, WorkerSettings(fetch_wait_ms=5, busy_fetch_wait_ms=1,
                                              busy_for_ms=50))  # type: ignore[arg-type]
    pace.saw(False)
    assert consumer._fetcher._fetch_max_wait_ms == 5
    pace.saw(True)
    assert consumer._fetcher._fetch_max_wait_ms == 1
    pace.saw(False)  # just after a record: still busy
    assert consumer._fetcher._fetch_max_wait_ms == 1
    time.sleep(0.06)
    pace.saw(False)
    assert consumer._fetcher._fetch_max_wait_ms == 5


def test_aiokafka_still_reads_the_fetch_wait_where_the_pace_sets_it() -> None:
    import inspect

    from aiokafka.consumer.fetcher import Fetcher

    assert "self._fetch_max_wait_ms" in inspect.getsource(Fetcher)
