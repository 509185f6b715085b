"""A worker's Kafka clients: their options, the fetch wait, and two aiokafka workarounds.

Used by the worker loop (streams.loop), the log agent and the HTTP gateway's reply reader.

Example:
    consumer = AIOKafkaConsumer(**consumer_options(settings, group_id, client_id))
    await consumer.start()
    pace = FetchPace(consumer, settings)
    records = await consumer.getmany(timeout_ms=100)
    check_fetcher(consumer)
    pace.saw(bool(records))
    ...
    await stop_consumer(consumer)
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiokafka import AIOKafkaConsumer

from streams.errors import FetcherDied
from streams.settings import WorkerSettings

log = logging.getLogger(__name__)

BATCH_BYTES = 1024 * 1024
"""How big a worker's producer batches may grow (see producer_options)."""


class FetchPace:
    """A consumer's fetch wait: `busy_fetch_wait_ms` while it is busy (records flow, replies
    are awaited), `fetch_wait_ms` once it was not for `busy_for_ms`.

    A broker that never answers a waiting fetch early (Tansu) makes every hop cost up to
    the fetch wait, and a worker's own hops (step 0 to step 1) the whole of it: the fetch
    that will carry step 1's input leaves just as step 0's arrives. A short wait while busy
    takes that from ~5 ms to ~1 ms; falling back when idle keeps idle polling cheap.

    Example:
        pace = FetchPace(consumer, settings)   # after consumer.start()
        records = await consumer.getmany(timeout_ms=100)
        pace.saw(bool(records))
    """

    def __init__(self, consumer: AIOKafkaConsumer, settings: WorkerSettings) -> None:
        self._fetcher = consumer._fetcher  # aiokafka reads its wait per request built
        self._busy_ms = settings.busy_fetch_wait_ms
        self._idle_ms = settings.fetch_wait_ms
        self._busy_for_s = settings.busy_for_ms / 1000
        self._last = float("-inf")

    def saw(self, busy: bool) -> None:
        """Call after every fetch: whether there is work (it returned records, or replies
        are awaited)."""
        now = time.monotonic()
        if busy:
            self._last = now
        busy = now - self._last < self._busy_for_s
        self._fetcher._fetch_max_wait_ms = self._busy_ms if busy else self._idle_ms


def check_fetcher(consumer: AIOKafkaConsumer) -> None:
    """Raise FetcherDied if the consumer's background fetch task has ended with an error.

    aiokafka's fetch task can fail an internal assertion while a rebalance changes the
    assignment (aio-libs/aiokafka#796; seen here in the log agent under a slow test run).
    Nothing reports it: `getmany` then returns no records, for good. Call after every fetch.
    """
    task = consumer._fetcher._fetch_task
    if task.done() and not task.cancelled() and task.exception() is not None:
        raise FetcherDied(f"the Kafka consumer's fetch task failed: {task.exception()!r}") \
            from task.exception()


async def stop_consumer(consumer: AIOKafkaConsumer) -> None:
    """Stop `consumer` (leave its group, close its connections), even if its fetch task died.

    aiokafka's stop() awaits the fetch task, and would raise a dead one's error again
    before closing the connections. That error was reported already (check_fetcher):
    a finished stand-in takes the task's place.
    """
    fetcher = consumer._fetcher
    if fetcher is not None and fetcher._fetch_task.done():
        stand_in = asyncio.get_running_loop().create_future()
        stand_in.set_result(None)
        fetcher._fetch_task = stand_in
    try:
        await consumer.stop()
    except Exception as exc:  # closing is best effort; the process goes on
        log.warning("stopping a Kafka consumer: %r", exc)


def consumer_options(settings: WorkerSettings, group_id: str, client_id: str) -> dict[str, Any]:
    """A worker's consumer: in the group, bounded fetches, our fetch wait, manual commits."""
    s = settings
    return {
        "bootstrap_servers": s.kafka_bootstrap, "group_id": group_id, "client_id": client_id,
        "enable_auto_commit": False, "auto_offset_reset": "earliest",
        "fetch_max_wait_ms": s.fetch_wait_ms, "max_poll_records": s.max_poll_records,
        "max_partition_fetch_bytes": s.max_partition_fetch_bytes,
        "session_timeout_ms": int(s.session_timeout_s * 1000),
        "rebalance_timeout_ms": int(s.rebalance_timeout_s * 1000),
        "heartbeat_interval_ms": int(s.heartbeat_interval_s * 1000),
    }


def producer_options(settings: WorkerSettings, client_id: str) -> dict[str, Any]:
    """A worker's producer: every replica acknowledges; records up to `max_message_bytes`.

    Batches may grow to 1 MiB (aiokafka's default is 16 KiB): a request carries one batch
    per partition, so small batches split a fetch's answers for one partition over
    several requests, one after the other (measured: 8 one-row answers filled a batch,
    and throughput fell by half once answers kept their input's partition).
    """
    return {"bootstrap_servers": settings.kafka_bootstrap, "client_id": client_id, "acks": "all",
            "linger_ms": 0, "max_batch_size": BATCH_BYTES,
            "max_request_size": settings.max_message_bytes}
