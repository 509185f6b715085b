"""W3C Trace Context: the `traceparent` (and `tracestate`) a request came with.

weir does not trace by itself; it carries the caller's trace context unchanged from the
input record (or HTTP request) through every step to the result record, the dead-letter
copy and the log row (`metadata.traceparent`), so a row can be found from a trace and a
trace from a row. On Kafka the headers travel as any header weir does not know does
(`Envelope.extra`); the gateway copies them from an HTTP request. A malformed
`traceparent` is dropped with its `tracestate`, as the W3C recommendation says a
receiver should.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"

_TRACEPARENT = re.compile(
    r"^(?P<version>[0-9a-f]{2})-(?P<trace>[0-9a-f]{32})-(?P<parent>[0-9a-f]{16})"
    r"-(?P<flags>[0-9a-f]{2})(?P<rest>-.*)?$"
)


def valid_traceparent(value: str) -> bool:
    """Whether `value` is a traceparent as version 00 defines it (later versions may add
    fields after the flags); all-zero trace or parent ids are invalid."""
    found = _TRACEPARENT.match(value)
    if found is None or found["version"] == "ff":
        return False
    if found["version"] == "00" and found["rest"]:
        return False
    return set(found["trace"]) != {"0"} and set(found["parent"]) != {"0"}


def trace_headers(headers: Mapping[str, str]) -> dict[str, bytes]:
    """The trace context of an HTTP request's headers, as Kafka headers (empty if none or
    if its traceparent is malformed)."""
    parent = headers.get(TRACEPARENT, "").strip()
    if not valid_traceparent(parent):
        return {}
    out = {TRACEPARENT: parent.encode()}
    state = headers.get(TRACESTATE)
    if state:
        out[TRACESTATE] = state.encode()
    return out


def traceparent_of(extra: Mapping[str, bytes]) -> str | None:
    """The valid traceparent among a record's other headers (`Envelope.extra`), if any."""
    value = extra.get(TRACEPARENT)
    if value is None:
        return None
    text = value.decode("ascii", "replace").strip()
    return text if valid_traceparent(text) else None
