"""Kafka message headers: what travels beside each record batch; and a record as a stage
sends it (Outgoing) or has decoded it (Decoded).

Values are Arrow IPC streams of one record batch (engine.codecs); the input
topic also accepts pandas-records JSON, told apart by `content-type`, and a JSON
request's answer on the result topic is JSON too (engine.answers, `REPLY_TYPE`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from typing import NamedTuple

import numpy as np
import pyarrow as pa
from aiokafka.structs import ConsumerRecord

from engine.codecs import ARROW_STREAM

log = logging.getLogger(__name__)

CONTENT_TYPE = "content-type"
REQUEST_ID = "weir-request-id"
VERSION = "weir-pipeline-version"
STARTED_NS = "weir-started-ns"
ERROR = "weir-error"
"""On an error reply (empty value): JSON {"step", "model", "type", "message", "attempts"}."""
SHADOW = "weir-shadow"
"""On a shadow challenger's log rows (and replies): the challenger's model name."""
REPLY_SHADOWS = "weir-reply-shadows"
"""Set on a request ("1") whose caller wants challengers' answers on the result topic too
(the HTTP gateway does); without it the result topic carries only the champion's answers."""
REPLY_UNCOMMITTED = "weir-reply-uncommitted"
"""Set on a request ("1") whose answers are awaited by a reader of uncommitted records (the
HTTP gateway's reply reader), and carried onto them: exactly once, a transaction that holds
only such answers need not commit soon for anyone to see them (streams.delivery)."""
REDELIVERED = "weir-redelivered"
"""Set ("1") on a request that a worker may have run before it died (streams.claims), and on
everything it leads to: its result may repeat an earlier answer with the same request id.
Only on a broker without transactions (Tansu): with them, a crash repeats nothing."""

REQUESTS = "weir-requests"
"""On a record that carries several requests one after another (the HTTP gateway coalesces
concurrent ones): JSON [[request id, rows], ...] in the order of their rows. Workers run
such a record as one request (its own `weir-request-id`) and carry this header onto what
it leads to: results, error replies, log rows, dead letters. `metadata.row` counts rows
through the whole record (so a split's parts still say where each row belongs), and
`request_rows` turns it back into each row's own request and index in it, as the log
agent and the gateway do."""

# Dead-letter records carry these beside the failed record's own headers.
FAILED_AT = "weir-failed-at"
"""When the record was given up on, ns since the epoch."""
SOURCE = "weir-source"
"""JSON [topic, partition, offset] of the record that failed."""
VALUE_DROPPED = "weir-value-dropped"
"""The size of a failed record's value, where the dead-letter copy leaves it out (it is over
WEIR_MAX_MESSAGE_BYTES): read it from its source offset while the input topic keeps it."""

REPLY_TYPE = "weir-reply-type"
"""The content type a request's answer (and error reply) is written in, where that is not
Arrow: stamped where the request enters (engine.answers.reply_type), carried to the stage
that answers."""
BASE64 = "weir-base64"
"""On a JSON answer: JSON list of the columns whose binary values are written as base64 text."""

RawHeaders = Iterable[tuple[str, bytes]]
Requests = tuple[tuple[str, int], ...]
"""The requests a coalesced record carries: (request id, rows), in row order."""


def request_rows(
    requests: Requests, rows: Sequence[int] | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For rows of a coalesced record, given their `metadata.row` (counted through the whole
    record): which of `requests` each row belongs to (its index there), and the row's index
    in that request.

    Example:
        request_rows((("a", 2), ("b", 3)), [0, 1, 2, 4])  # ([0, 0, 1, 1], [0, 1, 0, 2])
    """
    counts = np.fromiter((n for _, n in requests), np.int64, len(requests))
    ends = np.cumsum(counts)
    index = np.asarray(rows, np.int64)
    total = int(ends[-1]) if len(ends) else 0
    if index.size and (index.min() < 0 or index.max() >= total):
        raise ValueError(
            f"row {int(index.max()) if index.max() >= total else int(index.min())} "
            f"is outside the {total} rows the record's {REQUESTS} header lists"
        )
    which = np.searchsorted(ends, index, side="right")
    return which, index - (ends - counts)[which]


def _parse_requests(raw: bytes) -> Requests | None:
    """The REQUESTS header, or None where it is not a list of [request id, rows >= 0] (the
    record is then one request, as if the header were absent)."""
    try:
        parsed = tuple((str(rid), int(n)) for rid, n in json.loads(raw))
    except (ValueError, TypeError):
        log.warning("ignoring a malformed %s header: %.200r", REQUESTS, raw)
        return None
    return parsed if parsed and all(n >= 0 for _, n in parsed) else None


@dataclass(frozen=True)
class Envelope:
    """The headers weir reads and writes, decoded."""

    request_id: str
    content_type: str = ARROW_STREAM
    version: str = ""
    started_ns: int = 0
    error: dict[str, str] | None = None
    shadow: str | None = None
    reply_shadows: bool = False
    reply_uncommitted: bool = False
    redelivered: bool = False
    requests: Requests | None = None
    """Set on a record that carries several requests (REQUESTS)."""
    reply_type: str = ARROW_STREAM
    base64_columns: tuple[str, ...] = ()
    extra: dict[str, bytes] = field(default_factory=dict)

    @classmethod
    def of(cls, record: ConsumerRecord) -> Envelope:
        """A consumed record's headers; one sent without a request id is named by where it
        lies (topic-partition-offset), which a redelivery keeps."""
        return cls.parse(
            record.headers, default_request_id=f"{record.topic}-{record.partition}-{record.offset}"
        )

    @classmethod
    def parse(cls, headers: RawHeaders | None, *, default_request_id: str = "") -> Envelope:
        ours: dict[str, bytes] = {}
        extra: dict[str, bytes] = {}
        for key, value in headers or ():
            (ours if key in _OURS else extra)[key] = value

        def text(key: str) -> str:
            value = ours.get(key)
            return value.decode("utf-8", "replace") if value else ""

        return cls(
            request_id=text(REQUEST_ID) or default_request_id,
            content_type=text(CONTENT_TYPE) or ARROW_STREAM,
            version=text(VERSION),
            started_ns=_positive_int(text(STARTED_NS)),
            error=_error(text(ERROR)) if ERROR in ours else None,
            shadow=text(SHADOW) or None,
            reply_shadows=ours.get(REPLY_SHADOWS) == b"1",
            reply_uncommitted=ours.get(REPLY_UNCOMMITTED) == b"1",
            redelivered=ours.get(REDELIVERED) == b"1",
            requests=_parse_requests(ours[REQUESTS]) if REQUESTS in ours else None,
            reply_type=text(REPLY_TYPE) or ARROW_STREAM,
            base64_columns=_names(ours[BASE64]) if BASE64 in ours else (),
            extra=extra,
        )

    def headers(self) -> list[tuple[str, bytes]]:
        out = [
            (CONTENT_TYPE, self.content_type.encode()),
            (REQUEST_ID, self.request_id.encode()),
            (VERSION, self.version.encode()),
            (STARTED_NS, str(self.started_ns).encode()),
        ]
        if self.error is not None:
            out.append((ERROR, json.dumps(self.error).encode()))
        if self.shadow is not None:
            out.append((SHADOW, self.shadow.encode()))
        if self.reply_shadows:
            out.append((REPLY_SHADOWS, b"1"))
        if self.reply_uncommitted:
            out.append((REPLY_UNCOMMITTED, b"1"))
        if self.redelivered:
            out.append((REDELIVERED, b"1"))
        if self.requests is not None:
            out.append((REQUESTS, json.dumps(self.requests, separators=(",", ":")).encode()))
        if self.reply_type != ARROW_STREAM:
            out.append((REPLY_TYPE, self.reply_type.encode()))
        if self.base64_columns:
            out.append((BASE64, json.dumps(self.base64_columns).encode()))
        return out + list(self.extra.items())

    def replace(self, **changes: object) -> Envelope:
        """A copy with `changes`; every record passes here, and dataclasses.replace, which
        runs __init__ again, cost ~15 µs of a one-row message's ~80 µs."""
        unknown = changes.keys() - _FIELDS
        if unknown:
            raise TypeError(f"Envelope has no fields {sorted(unknown)}")
        copy = object.__new__(Envelope)
        copy.__dict__.update(self.__dict__, **changes)
        return copy


def _positive_int(text: str) -> int:
    """A header's number; 0 (unset) for one that is not a positive integer. Anyone who can
    produce to an input topic sets headers: one that cannot be read is ignored, never raised
    (a worker that raised on it would crash on the same record after every restart)."""
    try:
        return max(int(text), 0) if text else 0
    except ValueError:
        return 0


def _error(text: str) -> dict[str, str] | None:
    """An error reply's reason; None (not an error reply) for a header that is not a JSON
    object of strings, which weir never writes."""
    try:
        found = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(found, dict) or not all(isinstance(v, str) for v in found.values()):
        return None
    return found


def _names(raw: bytes) -> tuple[str, ...]:
    """The BASE64 header's column names; none where it is not a JSON list of strings."""
    try:
        found = json.loads(raw)
    except (ValueError, RecursionError):
        return ()
    if not isinstance(found, list) or not all(isinstance(n, str) for n in found):
        return ()
    return tuple(found)


_OURS = {
    CONTENT_TYPE,
    REQUEST_ID,
    VERSION,
    STARTED_NS,
    ERROR,
    SHADOW,
    REPLY_SHADOWS,
    REPLY_UNCOMMITTED,
    REDELIVERED,
    REQUESTS,
    REPLY_TYPE,
    BASE64,
}
_FIELDS = frozenset(f.name for f in fields(Envelope))


class Decoded(NamedTuple):
    """A record's value decoded, and where it came from when decoded with its neighbours
    (the batch, and its first row there)."""

    batch: pa.RecordBatch
    source: tuple[pa.RecordBatch, int] | None = None


@dataclass(frozen=True)
class Outgoing:
    """One record a stage wants sent: built by the stage's sink, sent by the worker's loop."""

    topic: str
    value: bytes | None
    headers: list[tuple[str, bytes]]
    key: bytes | None = None
    partition: int | None = None
    """The partition of the record it answers (taken modulo the topic's partition count):
    a request keeps its lane from input to result, so each partition's answers come in
    its input's order, the same key stays on one partition, and a fetch's answers go
    out in few, big batches. None: by key (random without one)."""

    @classmethod
    def answering(
        cls,
        record: ConsumerRecord,
        topic: str,
        value: bytes | None,
        headers: list[tuple[str, bytes]],
    ) -> Outgoing:
        """A record that carries on from `record`: its key, and its partition's lane."""
        return cls(topic, value, headers, record.key, record.partition)
