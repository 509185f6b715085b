"""streams/messages.py: the headers weir reads and writes beside each record."""

from __future__ import annotations

import pytest

from streams.messages import (
    CONTENT_TYPE,
    ERROR,
    REPLY_SHADOWS,
    REQUEST_ID,
    STARTED_NS,
    Envelope,
)


def test_headers_round_trip_with_the_callers_own_headers() -> None:
    env = Envelope(request_id="r1", version="v2", started_ns=123, error={"type": "X"},
                   shadow="chal", reply_shadows=True, extra={"trace": b"\x00\x01"})
    assert Envelope.parse(env.headers()) == env


def test_missing_or_empty_headers_get_defaults() -> None:
    env = Envelope.parse([(REQUEST_ID, b""), (STARTED_NS, b"")], default_request_id="t-0-5")
    assert (env.request_id, env.started_ns, env.error, env.shadow) == ("t-0-5", 0, None, None)
    assert env.content_type == "application/vnd.apache.arrow.stream"
    assert not Envelope.parse(None).reply_shadows


def test_the_last_of_repeated_headers_wins() -> None:
    env = Envelope.parse([(REQUEST_ID, b"a"), (REQUEST_ID, b"b"), (REPLY_SHADOWS, b"1"),
                          (CONTENT_TYPE, b"application/json")])
    assert (env.request_id, env.reply_shadows, env.content_type) == ("b", True, "application/json")


def test_an_error_header_is_json() -> None:
    assert Envelope.parse([(ERROR, b'{"type": "StepFailed"}')]).error == {"type": "StepFailed"}


def test_replace_changes_a_copy_and_refuses_unknown_fields() -> None:
    env = Envelope(request_id="r1", extra={"k": b"v"})
    changed = env.replace(version="v9", started_ns=5)
    assert (changed.request_id, changed.version, changed.started_ns) == ("r1", "v9", 5)
    assert (env.version, env.started_ns) == ("", 0)
    assert changed.extra == {"k": b"v"}
    with pytest.raises(TypeError, match="versoin"):
        env.replace(versoin="v9")


@pytest.mark.parametrize("headers", [
    [("weir-started-ns", b"abc")], [("weir-started-ns", b"9" * 5000)],
    [("weir-started-ns", b"-5")], [("weir-error", b"{not json")], [("weir-error", b"[1, 2]")],
    [("weir-error", b'{"type": 1}')], [("weir-error", b"[" * 100_000)],
])
def test_headers_weir_never_writes_are_ignored_not_raised(
        headers: list[tuple[str, bytes]]) -> None:
    env = Envelope.parse([("weir-request-id", b"r1"), *headers])
    assert env.request_id == "r1" and env.started_ns == 0 and env.error is None
