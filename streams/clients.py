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

import ssl
import time
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.helpers import create_ssl_context

from streams.aiokafka_internals import read_holes_again, set_fetch_wait
from streams.settings import RECORD_OVERHEAD_BYTES, WorkerSettings

BATCH_BYTES = 1024 * 1024
"""How big a worker's producer batches may grow (see producer_options)."""


class FetchPace:
    """A consumer's fetch wait: `busy_fetch_wait_ms` while it is busy (records flow, replies
    are awaited), `fetch_wait_ms` once it was not for `busy_for_ms`, and
    `idle_fetch_wait_ms` once it was not for `idle_after_s`.

    A broker that never answers a waiting fetch early (Tansu) makes every hop cost up to
    the fetch wait. A short wait while busy keeps hops to ~1 ms; a longer one when idle
    keeps idle polling cheap, and the first request after a long idle waits for at most
    `idle_fetch_wait_ms`. Apache Kafka answers a waiting fetch as soon as data arrives, so
    there all three are long (streams.admin.resolved) and cost no latency.

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
        self._idle_ms = settings.idle_fetch_wait_ms
        self._last = time.monotonic()

    def saw(self, busy: bool) -> None:
        """Call after every fetch: whether there is work (it returned records, or replies
        are awaited)."""
        now = time.monotonic()
        if busy:
            self._last = now
        quiet = now - self._last
        set_fetch_wait(
            self._consumer,
            next((wait for within, wait in self._waits if quiet < within), self._idle_ms),
        )


def connection_options(settings: WorkerSettings) -> dict[str, Any]:
    """Where and how any Kafka client of weir connects: bootstrap servers, security protocol,
    SASL credentials and the TLS context. Every weir client is built from these, so this
    is also where the process's consumers learn to read a fetch response's hole again
    (streams.fetch_holes)."""
    read_holes_again()
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
    }


def producer_options(
    settings: WorkerSettings, client_id: str, *, transactional_id: str | None = None
) -> dict[str, Any]:
    """A worker's producer: every replica acknowledges; values up to `max_message_bytes`;
    with a `transactional_id`, it sends in transactions (streams.delivery.ExactlyOnce).

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
