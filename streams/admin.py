"""Asking the broker: creating and deleting topics, where partitions end, what it supports."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, UnknownTopicOrPartitionError

from streams.clients import connection_options
from streams.errors import KafkaUnreachable
from streams.settings import WAKING_FETCH_WAIT_MS, WAKING_IDLE_FETCH_WAIT_MS, WorkerSettings
from streams.topics import TopicSpec


def admin_client(settings: WorkerSettings, **options: int) -> AIOKafkaAdminClient:
    """An admin client connected as every weir client is (start it; the caller closes it)."""
    return AIOKafkaAdminClient(**connection_options(settings), **options)


async def ensure_topics(
    settings: WorkerSettings, specs: Iterable[TopicSpec], timeout_s: float = 15.0
) -> None:
    """Create every topic in `specs` that does not exist yet, with its partition count.

    Workers must never read auto-created topics: those get the broker's default
    partition count. Waits until the broker's metadata lists each topic.
    """
    specs = list({spec.name: spec for spec in specs}.values())
    admin = admin_client(settings, request_timeout_ms=int(timeout_s * 1000))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [s for s in specs if s.name not in existing]
        if wanted:
            new = [NewTopic(s.name, s.partitions, 1, topic_configs=s.config) for s in wanted]
            try:
                response = await admin.create_topics(new)
            except TopicAlreadyExistsError:
                response = None
            for name, code, *_ in getattr(response, "topic_errors", []) or []:
                if code not in (0, TopicAlreadyExistsError.errno):
                    raise RuntimeError(f"could not create topic {name!r}: Kafka error code {code}")
        await _until_listed(admin, {s.name for s in specs}, listed=True, timeout_s=timeout_s)
    finally:
        await admin.close()


async def _until_listed(
    admin: AIOKafkaAdminClient, names: set[str], *, listed: bool, timeout_s: float
) -> None:
    """Wait until the broker's metadata lists every one of `names` (`listed`) or none of them:
    Apache Kafka answers a create or delete before its metadata shows it."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        shown = set(await admin.list_topics())
        waiting = names - shown if listed else names & shown
        if not waiting:
            return
        if asyncio.get_running_loop().time() > deadline:
            what = "did not appear" if listed else "were still listed"
            raise TimeoutError(f"topics {sorted(waiting)} {what} within {timeout_s:.0f}s")
        await asyncio.sleep(0.1)


async def topic_names(settings: WorkerSettings) -> list[str]:
    """Every topic the broker has."""
    admin = admin_client(settings)
    await admin.start()
    try:
        return list(await admin.list_topics())
    finally:
        await admin.close()


async def delete_topics(
    settings: WorkerSettings, names: Iterable[str], timeout_s: float = 15.0
) -> None:
    """Delete topics that exist (missing ones are ignored); waits until the broker's metadata
    no longer lists them, and raises if the broker refused to delete one."""
    admin = admin_client(settings, request_timeout_ms=int(timeout_s * 1000))
    await admin.start()
    try:
        present = set(await admin.list_topics())
        doomed = [n for n in names if n in present]
        if not doomed:
            return
        response = await admin.delete_topics(doomed)
        for name, code, *_ in getattr(response, "topic_error_codes", []) or []:
            if code not in (0, UnknownTopicOrPartitionError.errno):
                raise RuntimeError(f"could not delete topic {name!r}: Kafka error code {code}")
        await _until_listed(admin, set(doomed), listed=False, timeout_s=timeout_s)
    finally:
        await admin.close()


PROBE_FETCH_WAIT_MS = 10
"""A probe's fetches ask for records known to be there, or for the end: a long wait (Apache
Kafka's resolved 500 ms) made each `end_offsets` call wait it out, a log query 1.5 s."""


def probe_consumer(settings: WorkerSettings, *, uncommitted: bool = False) -> AIOKafkaConsumer:
    """A consumer of no group, for `end_offsets` and `records_after` (start it first; the
    caller owns it); it reads committed records only, unless `uncommitted`: then its end
    offsets count the records of open transactions too (the high watermark, not the last
    stable offset). Each call leaves the partitions it read paused, so it fetches only
    while one runs."""
    return AIOKafkaConsumer(
        **connection_options(settings),
        enable_auto_commit=False,
        isolation_level="read_uncommitted" if uncommitted else "read_committed",
        fetch_max_wait_ms=PROBE_FETCH_WAIT_MS,
        max_partition_fetch_bytes=settings.max_partition_fetch_bytes,
    )


async def end_offsets(
    consumer: AIOKafkaConsumer, tps: list[TopicPartition], timeout_s: float = 10.0
) -> dict[TopicPartition, int]:
    """The offset after the last record of each partition, right on Tansu too.

    Tansu answers a ListOffsets(latest) with the first offset of the
    partition's last record batch plus one, short of the end when that batch
    holds several records. So this reads from just before that answer: the
    batch comes back whole, and its last record (or the fetch's high
    watermark) gives the end. Apache Kafka's answer is right: there the read
    returns the last record, or skips a transaction marker to the end.
    `consumer` is one without a group that this call may assign and seek
    (the caller serialises its use).
    """
    ends = dict(await consumer.end_offsets(tps))
    pending = {tp: end for tp, end in ends.items() if end > 0}
    if not pending:
        return ends
    with _assigned(consumer, list(pending)):
        for tp, end in pending.items():
            consumer.seek(tp, end - 1)
        deadline = asyncio.get_running_loop().time() + timeout_s
        while pending:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"could not read the last records of {sorted(pending)}")
            for tp, msgs in (await consumer.getmany(*pending, timeout_ms=200)).items():
                if msgs and tp in pending:
                    ends[tp] = max(ends[tp], msgs[-1].offset + 1, consumer.highwater(tp) or 0)
                    del pending[tp]
            for tp, end in list(pending.items()):  # Apache Kafka: its answer stands where a
                position = await consumer.position(tp)  # transaction marker lies last, or
                stable = consumer.last_stable_offset(tp)  # records of a transaction still open
                if position >= end or (
                    stable is not None and 0 <= stable < end and position >= stable
                ):
                    del pending[tp]
    return ends


@contextmanager
def _assigned(consumer: AIOKafkaConsumer, tps: list[TopicPartition]) -> Iterator[None]:
    """`tps` assigned to a probe consumer while the block runs: paused after it, they are not
    fetched in the background between calls."""
    consumer.assign(tps)
    try:
        yield
    finally:
        consumer.pause(*tps)


async def supports_transactions(settings: WorkerSettings, timeout_s: float = 15.0) -> bool:
    """Whether the broker gives producer ids for transactions (Apache Kafka does; Tansu
    refuses: tests/streams/test_broker_transactions.py). Asks once, with a probe id."""
    producer = AIOKafkaProducer(
        **connection_options(settings),
        transactional_id=f"weir-probe-{uuid.uuid4().hex}",
        request_timeout_ms=int(timeout_s * 1000),
    )
    try:
        await asyncio.wait_for(producer.start(), timeout_s)
        return True
    except (KafkaError, TimeoutError):
        return False
    finally:
        await producer.stop()


async def resolved(settings: WorkerSettings) -> WorkerSettings:
    """`settings` with what was left to the broker decided: exactly once where it supports
    transactions; and there (Apache Kafka: a waiting fetch is answered as soon as data
    arrives) long fetch waits, which cost no latency and little idle CPU, where none was
    set."""
    transactions = (
        settings.exactly_once
        if settings.exactly_once is not None
        else await supports_transactions(settings)
    )
    update: dict[str, object] = {"exactly_once": transactions}
    if transactions:
        update |= {
            name: wait
            for name, wait in WAKING_FETCH_WAITS_MS.items()
            if name not in settings.model_fields_set
        }
    return settings.model_copy(update=update)


WAKING_FETCH_WAITS_MS = {
    "fetch_wait_ms": WAKING_FETCH_WAIT_MS,
    "busy_fetch_wait_ms": WAKING_FETCH_WAIT_MS,
    "idle_fetch_wait_ms": WAKING_IDLE_FETCH_WAIT_MS,
}
"""The fetch waits on a broker that answers a waiting fetch as soon as data arrives."""


async def records_after(
    consumer: AIOKafkaConsumer, tp: TopicPartition, start: int, end: int, timeout_s: float = 10.0
) -> int:
    """How many records of `tp` from offset `start` to `end` a reader still has to read: 0
    when only transaction markers (or aborted records) lie between, at least 1 while a
    transaction there is still open. `consumer` is one without a group (`probe_consumer`,
    reading committed records only) that this call may assign and seek."""
    with _assigned(consumer, [tp]):
        consumer.seek(tp, start)
        deadline = asyncio.get_running_loop().time() + timeout_s
        while asyncio.get_running_loop().time() < deadline:
            fetched = await consumer.getmany(tp, timeout_ms=200)
            found = sum(1 for r in fetched.get(tp, ()) if r.offset < end)
            if found:
                return found
            if await consumer.position(tp) >= end:
                return 0
            stable = consumer.last_stable_offset(tp)
            if stable is not None and stable < end and await consumer.position(tp) >= stable:
                return 1  # an open transaction: its records are not readable yet
    return 1


async def check_connection(settings: WorkerSettings, timeout_s: float = 20.0) -> None:
    """Connect and list topics as weir's clients will, or raise KafkaUnreachable saying what
    was tried and which settings to check (a wrong password fails here, not as a hang)."""
    s = settings
    how: str = s.kafka_security_protocol
    if how.startswith("SASL_"):
        how += f", {s.kafka_sasl_mechanism} as {s.kafka_sasl_username!r}"
    try:
        admin = admin_client(settings, request_timeout_ms=int(timeout_s * 1000))
        await asyncio.wait_for(admin.start(), timeout_s)
    except (KafkaError, OSError, TimeoutError, ValueError) as exc:
        raise KafkaUnreachable(
            f"could not connect to Kafka at {s.kafka_bootstrap} ({how}): {exc or type(exc).__name__}; "
            "check WEIR_KAFKA_BOOTSTRAP, WEIR_KAFKA_SECURITY_PROTOCOL, WEIR_KAFKA_SASL_* "
            "(a wrong username or password fails authentication) and WEIR_KAFKA_SSL_CAFILE"
        ) from exc
    await admin.close()
