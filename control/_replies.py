"""The gateway's replies: each request's answer gathered from its pipeline's result topic.

A split answers a request in parts (one per arm that got rows), so an answer is complete
when every row index (`metadata.row`) has come back; repeats (a record processed again
after a crash) are dropped by row. A coalesced record (streams.messages.REQUESTS) carries
several requests: its replies are cut back into each request's rows (`Group`).

A result topic's reader pauses once no request has waited for `QUIET_PAUSE_S`, and the
next request starts it again from the topic's end: a pipeline also fed over Kafka would
otherwise have every answer fetched and parsed by the server for nobody.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
from aiokafka import AIOKafkaConsumer, TopicPartition

from engine.columns import META_ROW, SHADOW_ERROR_FIELD, shadow_out_prefix
from engine.answers import decode_answer
from engine.errors import CodecError
from engine.steps import concat_in_order
from streams.aiokafka_internals import topic_partitions
from streams.clients import FETCHER_TIMEOUT_MS, FetchPace, connection_options
from streams.messages import Envelope, Requests, request_rows
from streams.settings import WorkerSettings

log = logging.getLogger(__name__)

QUIET_PAUSE_S = 10.0
"""How long a result topic's reader reads on with no request waiting before it pauses. The
first request after a pause waits for the topic's end to be looked up (a round trip to the
broker); requests closer together than this never do."""


@dataclass
class Parts:
    """The pieces of one answer (the champion's, or one challenger's), deduplicated by row."""

    rows: int
    batches: list[pa.RecordBatch] = field(default_factory=list)
    seen: set[int] = field(default_factory=set)
    error: Envelope | None = None
    complete: bool = False

    def add(self, env: Envelope, batch: pa.RecordBatch | None) -> None:
        if self.complete:
            return
        if env.error is not None:
            self.error, self.complete = env, True
            return
        if batch is None:
            return
        index = (
            batch.column(META_ROW).to_pylist()
            if META_ROW in batch.schema.names
            else list(range(batch.num_rows))
        )
        if index and self.seen.issuperset(index):
            return  # a repeat (a record processed again after a crash)
        self.batches.append(batch)
        self.seen.update(index)
        self.complete = len(self.seen) >= self.rows

    def table(self) -> pa.RecordBatch:
        """The rows in input order."""
        if len(self.batches) == 1 and _in_order(self.batches[0]):
            return self.batches[0]  # most answers: nothing to join or reorder
        order = [
            b.column(META_ROW).to_numpy(zero_copy_only=False)
            if META_ROW in b.schema.names
            else np.arange(b.num_rows)
            for b in self.batches
        ]
        return concat_in_order(self.batches, order, self.rows)


def _in_order(batch: pa.RecordBatch) -> bool:
    if META_ROW not in batch.schema.names:
        return True
    rows = batch.column(META_ROW).to_numpy(zero_copy_only=False)
    return bool((rows == np.arange(len(rows))).all())


class Pending:
    """One request waiting for its answer and, where wanted, its challengers' answers."""

    def __init__(self, rows: int, challengers: list[str], timeout_s: float = 0.0) -> None:
        self.timeout_s = timeout_s
        """How long it may wait, from when it was sent (for error messages)."""
        self.answer = Parts(rows)
        self.shadows = {name: Parts(rows) for name in challengers}
        self.answered = asyncio.Event()
        self.shadowed = asyncio.Event()
        if not challengers:
            self.shadowed.set()

    def add(self, env: Envelope, batch: pa.RecordBatch | None) -> None:
        parts = self.answer if env.shadow is None else self.shadows.get(env.shadow)
        if parts is None:
            return
        parts.add(env, batch)
        if self.answer.complete:
            self.answered.set()
        if all(p.complete for p in self.shadows.values()):
            self.shadowed.set()

    def result(self) -> pa.RecordBatch:
        """The champion's rows, with each challenger's `out_<name>.*` beside them."""
        rows = self.answer.table()
        if not self.shadows or META_ROW not in rows.schema.names:
            return rows
        champion_rows = rows.column(META_ROW).to_pylist()
        for name, parts in self.shadows.items():
            prefix = shadow_out_prefix(name)
            if parts.error is not None:
                text = (parts.error.error or {}).get("message", "failed")
                rows = rows.append_column(
                    prefix + SHADOW_ERROR_FIELD, pa.array([text] * rows.num_rows)
                )
                continue
            if not parts.batches:
                continue
            shadow = parts.table()
            position = {r: j for j, r in enumerate(shadow.column(META_ROW).to_pylist())}
            take = pa.array([position.get(r) for r in champion_rows], pa.int64())  # null: none
            for column in shadow.schema.names:
                if column.startswith(prefix) and column not in rows.schema.names:
                    rows = rows.append_column(column, shadow.column(column).take(take))
        return rows


class Group:
    """The requests one coalesced record carries, in row order: its replies (whole, or a
    split's parts) are cut into each request's rows, numbered from 0 in that request."""

    def __init__(self, members: list[tuple[str, Pending]]) -> None:
        self.members = members
        self.requests: Requests = tuple((rid, p.answer.rows) for rid, p in members)
        self._staying = len(members)

    def leave(self) -> bool:
        """A member is done waiting; True once all are (its record's replies can be let go)."""
        self._staying -= 1
        return self._staying == 0

    def add(self, env: Envelope, batch: pa.RecordBatch | None) -> None:
        if env.error is not None or batch is None:
            for _, pending in self.members:
                pending.add(env, None)
            return
        if META_ROW not in batch.schema.names:
            log.error(
                "a reply to coalesced record %s has no %s column; dropped", env.request_id, META_ROW
            )
            return
        which, local = request_rows(
            self.requests, batch.column(META_ROW).to_numpy(zero_copy_only=False)
        )
        order = np.argsort(which, kind="stable")
        at = batch.schema.get_field_index(META_ROW)
        grouped = batch.take(pa.array(order)).set_column(
            at, META_ROW, pa.array(local[order].astype(np.int32))
        )
        counts = np.bincount(which, minlength=len(self.members))
        first = 0
        for (_, pending), count in zip(self.members, counts.tolist()):
            if count:
                pending.add(env, grouped.slice(first, count))
            first += count


class Replies:
    """Reads one result topic from its end and hands replies to waiting requests (strays,
    repeats and other callers' answers are ignored)."""

    def __init__(self, topic: str, settings: WorkerSettings, ends: AIOKafkaConsumer) -> None:
        """`ends` (streams.admin.probe_consumer, uncommitted, started; the caller owns it and
        may share it between readers) looks up where the topic ends."""
        self.topic = topic
        self._ends = ends
        self._consumer = AIOKafkaConsumer(
            **connection_options(settings),
            enable_auto_commit=False,
            fetch_max_wait_ms=settings.fetch_wait_ms,
            auto_offset_reset="latest",
            max_partition_fetch_bytes=settings.max_partition_fetch_bytes,
            consumer_timeout_ms=FETCHER_TIMEOUT_MS,
        )
        self._waiting: dict[str, Pending | Group] = {}
        self._task: asyncio.Task[None] | None = None
        self._settings = settings
        self._pace: FetchPace | None = None
        self._tps: list[TopicPartition] = []
        self._waited_at = time.monotonic()  # when a request last waited
        self._paused = False
        self._resuming: asyncio.Future[None] | None = None  # shared by requests meanwhile

    @property
    def paused(self) -> bool:
        """No request has waited for QUIET_PAUSE_S: the topic is not read."""
        return self._paused

    async def start(self) -> None:
        await self._consumer.start()
        self._pace = FetchPace(self._consumer, self._settings)
        self._tps = sorted(await topic_partitions(self._consumer, self.topic))
        self._consumer.assign(self._tps)
        await self._from_end()
        self._task = asyncio.create_task(self._run(), name=f"replies-{self.topic}")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._consumer.stop()

    async def expect(
        self, request_id: str, target: Pending | Group, *, within_s: float | None = None
    ) -> None:
        """Hand replies with `request_id` to `target` until `forget`. Call it before the
        request is sent: a paused reader starts again from the topic's end first, which
        raises TimeoutError if it takes over `within_s` (the broker is away)."""
        self._waiting[request_id] = target
        self._waited_at = time.monotonic()
        if self._pace is not None:
            self._pace.wake()  # the next fetch waits briefly
        if self._paused:
            if self._resuming is None:
                self._resuming = asyncio.ensure_future(self._resume())
            await asyncio.wait_for(asyncio.shield(self._resuming), within_s)

    def forget(self, request_id: str) -> None:
        self._waiting.pop(request_id, None)

    async def _from_end(self) -> None:
        """Read on from the topic's end, its position set before any request is sent.

        The end is looked up on another connection (`ends`): a broker answers a connection's
        requests in order, and a fetch this reader sent before it paused waits there up to its
        whole idle wait (3 s on Apache Kafka) for records, which come only once the request
        that looks the end up first is sent (bench_gateway: 180-320 requests refused at a
        round's start, ~0.8 s, in about one run of eight). What that fetch brings back is
        dropped: its position moved.
        """
        for tp, end in (await self._ends.end_offsets(self._tps)).items():
            self._consumer.seek(tp, end)

    async def _resume(self) -> None:
        try:
            # Seek, then resume: a reader resumed first would fetch from where it paused
            # while the end is looked up, and hand over answers written meanwhile.
            await self._from_end()
            self._consumer.resume(*self._tps)
            self._paused = False
        finally:
            self._resuming = None

    async def _run(self) -> None:
        while True:
            records = await self._consumer.getmany(timeout_ms=1000)
            if self._waiting:
                self._waited_at = time.monotonic()
            elif (
                not self._paused
                and self._resuming is None
                and time.monotonic() - self._waited_at > QUIET_PAUSE_S
            ):
                self._consumer.pause(*self._tps)
                self._paused = True
            if self._pace is not None:
                self._pace.saw(bool(records), busy=bool(self._waiting))
            for msgs in records.values():
                for msg in msgs:
                    env = Envelope.parse(msg.headers)
                    target = self._waiting.get(env.request_id)
                    if target is not None:
                        target.add(env, _decoded(env, msg.value))


def _decoded(env: Envelope, value: bytes | None) -> pa.RecordBatch | None:
    """A reply's rows (None for an error reply, or an unreadable one)."""
    if env.error is not None or not value:
        return None
    try:
        return decode_answer(value, env.content_type, env.base64_columns)
    except CodecError as exc:
        log.error("unreadable reply to request %s: %s", env.request_id, exc)
        return None
