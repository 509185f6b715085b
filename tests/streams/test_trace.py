"""streams/trace.py: which traceparent headers weir carries and logs."""

from __future__ import annotations

import pytest

from streams.trace import trace_headers, traceparent_of, valid_traceparent

GOOD = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        (GOOD, True),
        ("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future", True),
        (GOOD + "-extra", False),  # version 00 has exactly four fields
        ("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", False),
        ("00-00000000000000000000000000000000-00f067aa0ba902b7-01", False),
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", False),
        ("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", False),  # upper case
        ("00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01", False),
        ("", False),
    ],
)
def test_traceparent_format(value: str, valid: bool) -> None:
    assert valid_traceparent(value) is valid


def test_http_headers_carry_a_valid_context_only() -> None:
    assert trace_headers({"traceparent": GOOD, "tracestate": "congo=t61rcWkgMzE"}) == {
        "traceparent": GOOD.encode(),
        "tracestate": b"congo=t61rcWkgMzE",
    }
    assert trace_headers({"traceparent": GOOD}) == {"traceparent": GOOD.encode()}
    assert trace_headers({"traceparent": "nonsense", "tracestate": "congo=1"}) == {}
    assert trace_headers({}) == {}


def test_a_record_s_traceparent_is_logged_when_valid() -> None:
    assert traceparent_of({"traceparent": GOOD.encode(), "other": b"x"}) == GOOD
    assert traceparent_of({"traceparent": b"garbage"}) is None
    assert traceparent_of({}) is None
