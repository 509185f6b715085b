"""Where a stage's results go, and how it reports a message that failed.

A sink only says what to send (`Outgoing` records, in the order they must go);
the worker's loop (streams.loop) sends them, and commits the input only once
they are delivered.

Answer path (everything but shadow challengers, `Forward`): a span's result
goes on to the result topic after the last step, or to the boundary topic of
the next span (a sidekick step's input, or the steps after it); then the input
of each shadow step it passed goes to one topic per challenger. A message that
failed on the answer path becomes an error reply on the result topic (its
value: the failed message's `in.*` columns) and a dead-letter record. The log
store reads its rows off the result topic (streams.log_agent), so an answer
crosses the broker once.

Answers and error replies on the result topic are written in the content type
stamped on the request where it entered (`Envelope.reply_type`: JSON for a
JSON request, engine.answers); what goes between stages, to challengers and to
the dead-letter topic keeps its own format. An answer that cannot be JSON
fails as a message does: an error reply saying why, and a dead letter.

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
from collections.abc import Callable
from dataclasses import dataclass, field

import pyarrow as pa
from aiokafka.structs import ConsumerRecord

from engine import codecs
from engine.answers import encode_answer
from engine.columns import IN_PREFIX
from engine.steps import ROW
from streams.compute import Work
from streams.errors import RecordTooLarge
from streams.messages import FAILED_AT, SOURCE, VALUE_DROPPED, Envelope, Outgoing

log = logging.getLogger(__name__)

DECODING = ("decoding the input", "codec")
"""The (step, model) an error reply names when a record could not be decoded: no step ran."""


def _result_value(work: Work, limit: int) -> bytes | None:
    """The work's result as an Arrow stream; None (with `work.error` set) if it cannot be
    encoded or is over `limit` bytes."""
    return _within(work, limit, work.encoded)


def _within(work: Work, limit: int, encode: Callable[[], bytes]) -> bytes | None:
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


def _answer(work: Work, env: Envelope, limit: int) -> tuple[bytes | None, Envelope]:
    """The work's result as its request's answer, and the headers that say its content type;
    None (with `work.error` set) if it cannot be encoded or is over `limit` bytes. Either
    kind is written with its micro-batch's other results."""
    if env.reply_type != codecs.PANDAS_RECORDS:
        return _result_value(work, limit), env
    try:
        answer = work.json_answer()
    except Exception as exc:
        work.error = exc
        return None, env
    return _within(work, limit, lambda: answer.value), env.replace(
        content_type=codecs.PANDAS_RECORDS, base64_columns=answer.base64_columns
    )


def _as_reply(batch: pa.RecordBatch, env: Envelope) -> tuple[bytes, Envelope]:
    """`batch` in the content type `env`'s request is answered in, and `env` with the
    headers that say so."""
    if env.reply_type != codecs.PANDAS_RECORDS:
        return codecs.encode(batch, codecs.ARROW_STREAM), env
    answer = encode_answer(batch, codecs.PANDAS_RECORDS)
    return answer.value, env.replace(
        content_type=codecs.PANDAS_RECORDS, base64_columns=answer.base64_columns
    )


def carried_input(
    batch: pa.RecordBatch | None, limit: int, reply: Envelope
) -> tuple[bytes, Envelope]:
    """A failed message's `in.*` columns and row indexes, for its error rows in the log
    (empty when the input was unreadable, or too big to send), in the content type
    `reply`'s request is answered in (Arrow where that fails); and `reply` with the
    headers that say which."""
    if batch is None:
        return b"", reply
    kept = batch.select([n for n in batch.schema.names if n.startswith(IN_PREFIX) or n == ROW])
    for env in (reply, reply.replace(reply_type=codecs.ARROW_STREAM)):
        try:
            value, env = _as_reply(kept, env)
        except Exception:
            continue
        return (value if len(value) <= limit else b""), env
    return b"", reply


Sent = list[Outgoing] | None
"""What a sink sends for one message, in order; None if the result could not be encoded."""


@dataclass
class Sink:
    """The answer path's failure handling; subclasses say where results go."""

    labels: dict[int, tuple[str, str]]
    """(step, model) of each step the stage runs, by step index, named in error replies."""
    output: str
    """The pipeline's result topic."""
    dead_letter: str
    max_bytes: int = 128 * 1024 * 1024
    """Largest result value it sends (`WorkerSettings.max_message_bytes`)."""

    def send(self, record: ConsumerRecord, env: Envelope, work: Work) -> Sent:
        """The records that send `work.result` on; None (with work.error set) if it cannot be
        encoded."""
        raise NotImplementedError

    def fail(self, record: ConsumerRecord, env: Envelope, work: Work) -> list[Outgoing]:
        """Error reply to the caller (and the log store), the record to the dead-letter topic."""
        failed = env.replace(error=self.error(env, work))
        carried, reply = carried_input(work.batch, self.max_bytes, failed)
        dead = failed.replace(
            extra={
                **env.extra,
                FAILED_AT: str(time.time_ns()).encode(),
                SOURCE: json.dumps([record.topic, record.partition, record.offset]).encode(),
            }
        )
        value = record.value
        if value is not None and len(value) > self.max_bytes:  # the broker would refuse it
            dead = dead.replace(extra={**dead.extra, VALUE_DROPPED: str(len(value)).encode()})
            value = b""
        return [
            Outgoing.answering(record, self.output, carried, reply.headers()),
            Outgoing.answering(record, self.dead_letter, value, dead.headers()),
        ]

    def error(self, env: Envelope, work: Work) -> dict[str, str]:
        """What an error reply says: where the message failed, why, after how many tries."""
        exc = work.error
        step, model = (
            self.labels.get(work.failed_step, DECODING)
            if work.failed_step is not None
            else self._unplaced(work)
        )
        log.warning(
            "request %s failed in %s after %d attempt(s): %s",
            env.request_id,
            step,
            work.attempts,
            exc,
        )
        return {
            "step": step,
            "model": model,
            "type": type(exc).__name__,
            "message": str(exc),
            "attempts": str(work.attempts),
        }

    def _unplaced(self, work: Work) -> tuple[str, str]:
        """A failure outside the steps: decoding the input (nothing ran), or after the last
        step (its result could not be finished or encoded: named after that step)."""
        if work.batch is None or not self.labels:
            return DECODING
        return self.labels[max(self.labels)]


@dataclass
class Forward(Sink):
    """On to one topic (the result topic after the last step, else the next span's boundary
    topic), then each shadow step's input to its challengers' topics."""

    next: str = ""
    challengers: dict[int, tuple[str, ...]] = field(default_factory=dict)
    """The challengers' topics of each shadow step the stage runs, by step index."""

    def send(self, record: ConsumerRecord, env: Envelope, work: Work) -> Sent:
        if self.next == self.output:
            value, sent = _answer(work, env, self.max_bytes)
        else:
            value, sent = _result_value(work, self.max_bytes), env
        if value is None:
            return None
        return [
            Outgoing.answering(record, self.next, value, sent.headers()),
            *self._fan_out(record, env, work),
        ]

    def fail(self, record: ConsumerRecord, env: Envelope, work: Work) -> list[Outgoing]:
        return super().fail(record, env, work) + self._fan_out(record, env, work)

    def _fan_out(self, record: ConsumerRecord, env: Envelope, work: Work) -> list[Outgoing]:
        """The shadow steps' inputs, whether the champion (or a later step) succeeded or not."""
        out: list[Outgoing] = []
        for step, message in work.fanouts():
            try:
                value = codecs.encode(message, codecs.ARROW_STREAM)
            except Exception:
                log.exception("could not fan request %s out to challengers", env.request_id)
                continue
            headers = env.headers()
            out += [
                Outgoing.answering(record, topic, value, headers)
                for topic in self.challengers.get(step, ())
            ]
        return out


@dataclass
class ShadowAnswer(Sink):
    """A challenger's rows: to the log topic, and to the result topic if the request asks."""

    logs: str = ""
    challenger: str = ""

    def send(self, record: ConsumerRecord, env: Envelope, work: Work) -> Sent:
        value = _result_value(work, self.max_bytes)
        if value is None:
            return None
        return self._to_log(record, env.replace(shadow=self.challenger), value)

    def fail(self, record: ConsumerRecord, env: Envelope, work: Work) -> list[Outgoing]:
        failed = env.replace(
            shadow=self.challenger, error=self.error(env, work), reply_type=codecs.ARROW_STREAM
        )  # a challenger's rows stay Arrow
        carried, failed = carried_input(work.batch, self.max_bytes, failed)
        return self._to_log(record, failed, carried)

    def _to_log(self, record: ConsumerRecord, env: Envelope, value: bytes) -> list[Outgoing]:
        headers = env.headers()
        sent = [Outgoing.answering(record, self.logs, value, headers)]
        if env.reply_shadows:
            sent.append(Outgoing.answering(record, self.output, value, headers))
        return sent
