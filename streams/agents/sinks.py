"""Where a stage's results go, and how it reports a message that failed.

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

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import faust
import numpy as np
import pyarrow as pa

from engine import codecs
from engine.steps import IN_PREFIX, ROW
from streams.messages import FAILED_AT, SOURCE, Envelope

log = logging.getLogger(__name__)

SPLIT_ARM = "_route.arm"
"""Added by a splitter's compute: the arm each row goes to (dropped before it is sent)."""


def _encode(batch: pa.RecordBatch, work: Any) -> bytes | None:
    """`batch` as an Arrow stream; None (with `work.error` set) if it cannot be encoded."""
    try:
        return codecs.encode(batch, codecs.ARROW_STREAM)
    except Exception as exc:
        work.error = exc
        return None


def carried_input(batch: pa.RecordBatch | None) -> bytes:
    """A failed message's `in.*` columns and row indexes, for its error rows in the log
    (empty when the input was unreadable)."""
    if batch is None:
        return b""
    kept = [n for n in batch.schema.names if n.startswith(IN_PREFIX) or n == ROW]
    try:
        return codecs.encode(batch.select(kept), codecs.ARROW_STREAM)
    except Exception:
        return b""


def _error(env: Envelope, labels: tuple[str, str], work: Any) -> dict[str, str]:
    exc = work.error
    log.warning("request %s failed in %s after %d attempt(s): %s", env.request_id, labels[0],
                work.attempts, exc)
    return {"step": labels[0], "model": labels[1], "type": type(exc).__name__,
            "message": str(exc), "attempts": str(work.attempts)}


@dataclass
class Sink:
    """The answer path's failure handling; subclasses say where results go."""

    labels: tuple[str, str]
    """(step, model) named in error replies and rows."""
    output: faust.TopicT
    dead_letter: faust.TopicT

    async def send(self, message: Any, env: Envelope, work: Any) -> bool:
        """Send `work.result` on; False (with work.error set) if it cannot be encoded."""
        raise NotImplementedError

    async def fail(self, message: Any, value: bytes | None, env: Envelope, work: Any) -> None:
        """Error reply to the caller (and the log store), the record to the dead-letter topic."""
        failed = env.replace(error=_error(env, self.labels, work))
        await self.output.send(key=message.key, value=carried_input(work.batch),
                               headers=failed.headers())
        await self.dead_letter.send(
            key=message.key, value=value,
            headers=failed.replace(extra={
                **env.extra, FAILED_AT: str(time.time_ns()).encode(),
                SOURCE: json.dumps([message.topic, message.partition, message.offset]).encode(),
            }).headers(),
        )


@dataclass
class Forward(Sink):
    """On to one topic: the next step's, or after the last step the result topic (which
    the log store reads too)."""

    next: faust.TopicT | None = None

    async def send(self, message: Any, env: Envelope, work: Any) -> bool:
        assert self.next is not None
        value = _encode(work.result, work)
        if value is None:
            return False
        await self.next.send(key=message.key, value=value, headers=env.headers())
        return True


@dataclass
class SplitRoute(Sink):
    """A splitter's rows: each to its arm's topic (rows keep their order within an arm)."""

    arms: tuple[faust.TopicT, ...] = ()

    async def send(self, message: Any, env: Envelope, work: Any) -> bool:
        batch: pa.RecordBatch = work.result
        chosen = batch.column(SPLIT_ARM).to_numpy(zero_copy_only=False)
        rows = batch.drop_columns([SPLIT_ARM])
        parts = []
        for arm, topic in enumerate(self.arms):
            picked = np.flatnonzero(chosen == arm)
            if picked.size:
                value = _encode(rows.take(pa.array(picked)), work)
                if value is None:
                    return False
                parts.append((topic, value))
        for topic, value in parts:
            await topic.send(key=message.key, value=value, headers=env.headers())
        return True


@dataclass
class FanOut(Sink):
    """A shadow's champion: its result goes on (through `inner`) first, then its input
    to every challenger's topic, whether the champion succeeded or not."""

    inner: Sink | None = None
    challengers: tuple[faust.TopicT, ...] = ()

    async def send(self, message: Any, env: Envelope, work: Any) -> bool:
        assert self.inner is not None
        if not await self.inner.send(message, env, work):
            return False
        await self._fan_out(message, env, work)
        return True

    async def fail(self, message: Any, value: bytes | None, env: Envelope, work: Any) -> None:
        assert self.inner is not None
        await self.inner.fail(message, value, env, work)
        await self._fan_out(message, env, work)

    async def _fan_out(self, message: Any, env: Envelope, work: Any) -> None:
        if work.batch is None or not self.challengers:
            return
        try:
            value = codecs.encode(work.batch, codecs.ARROW_STREAM)
        except Exception:
            log.exception("could not fan request %s out to challengers", env.request_id)
            return
        for topic in self.challengers:
            await topic.send(key=message.key, value=value, headers=env.headers())


@dataclass
class ShadowAnswer(Sink):
    """A challenger's rows: to the log topic, and to the result topic if the request asks."""

    logs: faust.TopicT | None = None
    challenger: str = ""

    async def send(self, message: Any, env: Envelope, work: Any) -> bool:
        value = _encode(work.result, work)
        if value is None:
            return False
        marked = env.replace(shadow=self.challenger)
        assert self.logs is not None
        await self.logs.send(key=message.key, value=value, headers=marked.headers())
        if env.reply_shadows:
            await self.output.send(key=message.key, value=value, headers=marked.headers())
        return True

    async def fail(self, message: Any, value: bytes | None, env: Envelope, work: Any) -> None:
        failed = env.replace(shadow=self.challenger, error=_error(env, self.labels, work))
        rows = carried_input(work.batch)
        assert self.logs is not None
        await self.logs.send(key=message.key, value=rows, headers=failed.headers())
        if env.reply_shadows:
            await self.output.send(key=message.key, value=rows, headers=failed.headers())
