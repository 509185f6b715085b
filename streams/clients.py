"""weir's Kafka clients: how they connect, their options, and their fetch wait (aiokafka's
internals, where weir needs them, are reached in streams.aiokafka_internals only).

Every client weir creates (the worker loop, the log agent, the HTTP gateway, admin and
probe clients) connects with `connection_options`, so one set of settings reaches them
all (security protocol, SASL, TLS).

Example:
    consumer = AIOKafkaConsumer(**consumer_options(settings, group_id, client_id))
    await consumer.start()
    pace = FetchPace(consumer, settings)
    records = await consumer.getmany(timeout_ms=100)
    pace.saw(bool(records))
"""

from __future__ import annotations

import asyncio
import ssl
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.helpers import create_ssl_context

from streams.aiokafka_internals import (
    read_holes_again,
    set_fetch_wait,
    unfetched_positions,
    wake_fetcher_when_a_fetch_ends,
)
from streams.settings import RECORD_OVERHEAD_BYTES, WorkerSettings

BATCH_BYTES = 1024 * 1024
"""How big a worker's producer batches may grow (see producer_options)."""


FETCHER_TIMEOUT_MS = 1000
"""How often a long-lived consumer's background fetch routine looks around when nothing
happens (aiokafka's `consumer_timeout_ms`, 200 by default). The routine wakes on every
event that lets it fetch (an answer, records taken, a seek, a resume, a new assignment);
this look is a safety net, and each one wakes an idle process (~0.25 ms of CPU a wake,
control/server/quiet_uvicorn.py): five a second for each consumer with partitions."""

FLOOR_HOLD_S = 1.0
"""How long the fetch wait a broker needed (FetchPace) holds before it is halved: halved at
each fetch with records, it fell below the need at once, and the reader stalled again."""


STARVED_ROUNDS = 2
"""From this many fetches of a partition in a row that came back empty at one position while
the broker said records lay past it, each one raises the floor under the fetch wait
(FetchPace). One such answer is common on Tansu and harmless (it reads the high watermark
after listing the batches, so records that came meanwhile are found by the next fetch)."""


class FetchPace:
    """A consumer's fetch wait: `busy_fetch_wait_ms` while it is busy (records flow, replies
    are awaited), `fetch_wait_ms` once it was not for `busy_for_ms`, and
    `idle_fetch_wait_ms` once it was not for `idle_after_s`.

    Tansu answers a fetch once it has found records, or when the wait is up, looking again
    only a few times meanwhile: a short wait while busy keeps hops to ~1 ms; a longer one
    when idle keeps idle polling cheap, and the first request after a long idle waits for
    at most `idle_fetch_wait_ms`. Apache Kafka answers a waiting fetch as soon as data
    arrives, so there all three are long (streams.admin.resolved) and cost no latency.

    A wait too short for the broker to find the records is lengthened. Tansu 0.6.0 lists a
    partition's batches from its first on every fetch, and stops listing when the fetch's
    wait is up: with a few thousand batches in a partition, a 1 ms wait ended the listing
    before it reached the records asked for, and the partition came back empty while the
    broker said it held more (a 5 ms reader of 6,000-batch partitions fell further behind a
    300 records/s stream for all of a 20 s run; with 100 ms waits it kept up). So when a
    partition's fetches come back empty STARVED_ROUNDS times in a row while records lie
    past its position, that answer and each further one make the next fetches wait at least
    twice as long (up to `idle_fetch_wait_ms`); while fetches return records, that floor
    halves once every FLOOR_HOLD_S. Waiting longer costs nothing while records are there to
    find. Fetched records that wait their turn in the consumer's buffer do not count: the
    broker found them. (Readers of 2,000-batch partitions at 300 records/s beside a CPU hog:
    the longest stall of a partition 0.9-2.4 s without the floor, 0.10-0.22 s with it.)

    Example:
        pace = FetchPace(consumer, settings)   # after consumer.start()
        records = await consumer.getmany(timeout_ms=100)
        pace.saw(bool(records))
    """

    def __init__(self, consumer: AIOKafkaConsumer, settings: WorkerSettings) -> None:
        self._consumer = consumer
        self._waits = (
            (settings.busy_for_ms / 1000, settings.busy_fetch_wait_ms),
            (settings.idle_after_s, settings.fetch_wait_ms),
        )
        self._idle_after_s = settings.idle_after_s
        self._idle_ms = settings.idle_fetch_wait_ms
        self._last = time.monotonic()
        self._wait_ms = settings.fetch_wait_ms
        self._floor_ms = 0
        """The shortest wait the broker has shown it needs to find the records (see above)."""
        self._floor_set = self._last
        self._empty: dict[TopicPartition, tuple[int, int, int]] = {}
        """Each partition left unread: its position, its last fetch response's time, and how
        many responses in a row came back empty at that position."""

    def saw(self, records: bool, *, busy: bool | None = None) -> None:
        """Call after every fetch: whether it returned records, and whether there is work
        (default: whether it returned records; a reply reader is busy while replies are
        awaited, whatever it read)."""
        now = time.monotonic()
        if records if busy is None else busy:
            self._last = now
        if self._starved():
            self._floor_ms = min(self._idle_ms, 2 * self._wait_ms)
            self._floor_set = now
        elif records and now - self._floor_set >= FLOOR_HOLD_S:
            self._floor_ms //= 2
            self._floor_set = now
        self._set_wait(now)

    def _starved(self) -> bool:
        """Whether a partition's fetch came back empty, the STARVED_ROUNDS-th time or later in
        a row at one position, while records lay past it."""
        starved = False
        empty = {}
        for tp, (position, answered) in unfetched_positions(self._consumer).items():
            at, seen, count = self._empty.get(tp, (position, answered, 0))
            if at != position:
                count = 0
            elif seen != answered:
                count += 1
                starved |= count >= STARVED_ROUNDS
            empty[tp] = (position, answered, count)
        self._empty = empty
        return starved

    @property
    def idle(self) -> bool:
        """Whether it has been `idle_after_s` since records last came (or work was seen)."""
        return time.monotonic() - self._last >= self._idle_after_s

    def wake(self) -> None:
        """Work is on its way (a request was sent): the next fetch waits as while busy."""
        self._last = time.monotonic()
        self._set_wait(self._last)

    def _set_wait(self, now: float) -> None:
        quiet = now - self._last
        paced = next((wait for within, wait in self._waits if quiet < within), self._idle_ms)
        self._wait_ms = max(paced, self._floor_ms)
        set_fetch_wait(self._consumer, self._wait_ms)


async def records_unless(
    stop: asyncio.Event, consumer: AIOKafkaConsumer, *, timeout_ms: int, max_records: int
) -> dict[TopicPartition, list[ConsumerRecord]]:
    """`consumer.getmany(...)`, or nothing as soon as `stop` is set: a long poll that does
    not hold up a stop. (Records a cancelled getmany had not returned stay buffered.)"""
    if stop.is_set():
        return {}
    getting = asyncio.ensure_future(
        consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
    )
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait((getting, stopping), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (getting, stopping):
            task.cancel()
        await asyncio.gather(getting, stopping, return_exceptions=True)
    return getting.result() if not getting.cancelled() else {}


def connection_options(settings: WorkerSettings) -> dict[str, Any]:
    """Where and how any Kafka client of weir connects: bootstrap servers, security protocol,
    SASL credentials and the TLS context. Every weir client is built from these, so this
    is also where the process's consumers learn to read a fetch response's hole again
    (streams.fetch_holes) and to fetch again as soon as a fetch ends
    (streams.aiokafka_internals.wake_fetcher_when_a_fetch_ends)."""
    read_holes_again()
    wake_fetcher_when_a_fetch_ends()
    s = settings
    options: dict[str, Any] = {
        "bootstrap_servers": s.kafka_bootstrap,
        "security_protocol": s.kafka_security_protocol,
    }
    if s.kafka_security_protocol.startswith("SASL_"):
        if not s.kafka_sasl_username or s.kafka_sasl_password is None:
            raise ValueError(
                f"WEIR_KAFKA_SECURITY_PROTOCOL={s.kafka_security_protocol} needs "
                "WEIR_KAFKA_SASL_USERNAME and WEIR_KAFKA_SASL_PASSWORD"
            )
        options |= {
            "sasl_mechanism": s.kafka_sasl_mechanism,
            "sasl_plain_username": s.kafka_sasl_username,
            "sasl_plain_password": s.kafka_sasl_password.get_secret_value(),
        }
    if s.kafka_security_protocol.endswith("SSL"):
        options["ssl_context"] = _ssl_context(settings)
    return options


def _ssl_context(settings: WorkerSettings) -> ssl.SSLContext:
    context: ssl.SSLContext = create_ssl_context(
        cafile=str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None,
        certfile=str(settings.kafka_ssl_certfile) if settings.kafka_ssl_certfile else None,
        keyfile=str(settings.kafka_ssl_keyfile) if settings.kafka_ssl_keyfile else None,
    )
    return context


def consumer_options(
    settings: WorkerSettings, group_id: str, client_id: str, *, exactly_once: bool = False
) -> dict[str, Any]:
    """A worker's consumer: in the group, bounded fetches, our fetch wait, manual commits;
    exactly once, it reads only committed transactions."""
    s = settings
    return {
        **connection_options(settings),
        "group_id": group_id,
        "client_id": client_id,
        "isolation_level": "read_committed" if exactly_once else "read_uncommitted",
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "fetch_max_wait_ms": s.fetch_wait_ms,
        "max_poll_records": s.max_poll_records,
        "max_partition_fetch_bytes": s.max_partition_fetch_bytes,
        "session_timeout_ms": int(s.session_timeout_s * 1000),
        "rebalance_timeout_ms": int(s.rebalance_timeout_s * 1000),
        "heartbeat_interval_ms": int(s.heartbeat_interval_s * 1000),
        "consumer_timeout_ms": FETCHER_TIMEOUT_MS,
    }


def producer_options(
    settings: WorkerSettings, client_id: str, *, transactional_id: str | None = None
) -> dict[str, Any]:
    """A worker's producer: every replica acknowledges; values up to `max_message_bytes`;
    with a `transactional_id`, it sends in transactions (streams.transactions.ExactlyOnce).

    Batches may grow to 1 MiB (aiokafka's default is 16 KiB): a request carries one batch
    per partition, so small batches split a fetch's answers for one partition over
    several requests, one after the other (measured: 8 one-row answers filled a batch,
    and throughput fell by half once answers kept their input's partition).
    """
    options = {
        **connection_options(settings),
        "client_id": client_id,
        "acks": "all",
        "linger_ms": 0,
        "max_batch_size": BATCH_BYTES,
        "max_request_size": settings.max_message_bytes + RECORD_OVERHEAD_BYTES,
    }
    if transactional_id is not None:
        options |= {
            "transactional_id": transactional_id,
            "transaction_timeout_ms": int(settings.transaction_timeout_s * 1000),
        }
    return options
