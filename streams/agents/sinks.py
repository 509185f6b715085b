"""Where a stage's results go, and how it reports a message that failed.

A sink only says what to send (`Outgoing` records, in the order they must go);
the worker's loop (streams.loop) sends them, and commits the input only once
they are delivered.

Answer path (everything but shadow challengers): a result goes on to the next
step's topic or, after the last step, to the result topic (`Forward`), to a
split's arm topics (`SplitRoute`), and a shadow's champion also fans its input out to one
topic per challenger (`FanOut`). A message that failed on the answer path
becomes an error reply on the result topic (its value: the failed message's
`in.*` columns) and a dead-letter record. The log store reads its rows off the
result topic (streams.agents.log), so an answer crosses the broker once.

Shadow challengers (`ShadowAnswer`) write their rows to the log topic, marked
with the `weir-shadow` header, and to the result topic only for requests that
asked for challengers' answers (the HTTP gateway does); their failures are
logged, never dead-lettered or sent as the request's error: the champion
answered it.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
from aiokafka.structs import ConsumerRecord

from engine import codecs
from engine.steps import IN_PREFIX, ROW
from streams.errors import RecordTooLarge
from streams.messages import FAILED_AT, SOURCE, Decoded, Envelope, Outgoing

log = logging.getLogger(__name__)

SPLIT_ARM = "_route.arm"
"""Added by a splitter's compute: the arm each row goes to (dropped before it is sent)."""


def _result_value(work: Any, limit: int) -> bytes | None:
    """The work's result as an Arrow stream; None (with `work.error` set) if it cannot be
    encoded or is over `limit` bytes."""
    return _within(work, limit, work.encoded)


def _encode(batch: pa.RecordBatch, work: Any, limit: int) -> bytes | None:
    """`batch` as an Arrow stream, or None as `_result_value` says."""
    return _within(work, limit, lambda: codecs.encode(batch, codecs.ARROW_STREAM))


def _within(work: Any, limit: int, encode: Callable[[], bytes]) -> bytes | None:
    """`encode()`, unless it fails or is over `limit` bytes: then None, with `work.error` set."""
    try:
        value = encode()
    except Exception as exc:
        work.error = exc
        return None
    if len(value) > limit:
        work.error = RecordTooLarge(len(value), limit)
        return None
    return value


def carried_input(batch: pa.RecordBatch | None, limit: int) -> bytes:
    """A failed message's `in.*` columns and row indexes, for its error rows in the log
    (empty when the input was unreadable, or too big to send)."""
    if batch is None:
        return b""
    kept = [n for n in batch.schema.names if n.startswith(IN_PREFIX) or n == ROW]
    try:
        value = codecs.encode(batch.select(kept), codecs.ARROW_STREAM)
    except Exception:
        return b""
    return value if len(value) <= limit else b""


def _error(env: Envelope, labels: tuple[str, str], work: Any) -> dict[str, str]:
    exc = work.error
    log.warning("request %s failed in %s after %d attempt(s): %s", env.request_id, labels[0],
                work.attempts, exc)
    return {"step": labels[0], "model": labels[1], "type": type(exc).__name__,
            "message": str(exc), "attempts": str(work.attempts)}


Sent = list[Outgoing] | None
"""What a sink sends for one message, in order; None if the result could not be encoded."""


@dataclass
class Sink:
    """The answer path's failure handling; subclasses say where results go."""

    labels: tuple[str, str]
    """(step, model) named in error replies and rows."""
    output: str
    """The pipeline's result topic."""
    dead_letter: str
    max_bytes: int = 128 * 1024 * 1024
    """Largest result value it sends (`WorkerSettings.max_message_bytes`)."""

    def send(self, record: ConsumerRecord, env: Envelope, work: Any) -> Sent:
        """The records that send `work.result` on; None (with work.error set) if it cannot be
        encoded."""
        raise NotImplementedError

    def fail(self, record: ConsumerRecord, env: Envelope, work: Any) -> list[Outgoing]:
        """Error reply to the caller (and the log store), the record to the dead-letter topic."""
        failed = env.replace(error=_error(env, self.labels, work))
        dead = failed.replace(extra={
            **env.extra, FAILED_AT: str(time.time_ns()).encode(),
            SOURCE: json.dumps([record.topic, record.partition, record.offset]).encode(),
        })
        carried = carried_input(work.batch, self.max_bytes)
        return [Outgoing.answering(record, self.output, carried, failed.headers()),
                Outgoing.answering(record, self.dead_letter, record.value, dead.headers())]


@dataclass
class Forward(Sink):
    """On to one topic: the next step's, or after the last step the result topic (which
    the log store reads too)."""

    next: str = ""

    def send(self, record: ConsumerRecord, env: Envelope, work: Any) -> Sent:
        value = _result_value(work, self.max_bytes)
        if value is None:
            return None
        return [Outgoing.answering(record, self.next, value, env.headers(), work.decoded)]


@dataclass
class SplitRoute(Sink):
    """A splitter's rows: each to its arm's topic (rows keep their order within an arm)."""

    arms: tuple[str, ...] = ()

    def send(self, record: ConsumerRecord, env: Envelope, work: Any) -> Sent:
        batch: pa.RecordBatch = work.result
        chosen = batch.column(SPLIT_ARM).to_numpy(zero_copy_only=False)
        rows = batch.drop_columns([SPLIT_ARM])
        headers = env.headers()
        parts = []
        for arm, topic in enumerate(self.arms):
            picked = np.flatnonzero(chosen == arm)
            if picked.size:
                taken = rows.take(pa.array(picked))
                value = _encode(taken, work, self.max_bytes)
                if value is None:
                    return None
                parts.append(Outgoing.answering(record, topic, value, headers,
                                                functools.partial(Decoded.of, taken)))
        return parts


@dataclass
class FanOut(Sink):
    """A shadow's champion: its result goes on (through `inner`) first, then its input
    to every challenger's topic, whether the champion succeeded or not."""

    inner: Sink | None = None
    challengers: tuple[str, ...] = ()

    def send(self, record: ConsumerRecord, env: Envelope, work: Any) -> Sent:
        assert self.inner is not None
        sent = self.inner.send(record, env, work)
        if sent is None:
            return None
        return sent + self._fan_out(record, env, work)

    def fail(self, record: ConsumerRecord, env: Envelope, work: Any) -> list[Outgoing]:
        assert self.inner is not None
        return self.inner.fail(record, env, work) + self._fan_out(record, env, work)

    def _fan_out(self, record: ConsumerRecord, env: Envelope, work: Any) -> list[Outgoing]:
        if work.batch is None or not self.challengers:
            return []
        try:
            value = codecs.encode(work.batch, codecs.ARROW_STREAM)
        except Exception:
            log.exception("could not fan request %s out to challengers", env.request_id)
            return []
        headers = env.headers()
        return [Outgoing.answering(record, topic, value, headers) for topic in self.challengers]


@dataclass
class ShadowAnswer(Sink):
    """A challenger's rows: to the log topic, and to the result topic if the request asks."""

    logs: str = ""
    challenger: str = ""

    def send(self, record: ConsumerRecord, env: Envelope, work: Any) -> Sent:
        value = _result_value(work, self.max_bytes)
        if value is None:
            return None
        return self._to_log(record, env.replace(shadow=self.challenger), value)

    def fail(self, record: ConsumerRecord, env: Envelope, work: Any) -> list[Outgoing]:
        failed = env.replace(shadow=self.challenger, error=_error(env, self.labels, work))
        return self._to_log(record, failed, carried_input(work.batch, self.max_bytes))

    def _to_log(self, record: ConsumerRecord, env: Envelope, value: bytes) -> list[Outgoing]:
        headers = env.headers()
        sent = [Outgoing.answering(record, self.logs, value, headers)]
        if env.reply_shadows:
            sent.append(Outgoing.answering(record, self.output, value, headers))
        return sent
