"""streams/messages.py: the headers weir reads and writes beside each record."""

from __future__ import annotations

import pytest
from aiokafka.structs import ConsumerRecord

from streams.messages import (
    BASE64,
    CONTENT_TYPE,
    ERROR,
    REPLY_SHADOWS,
    REPLY_TYPE,
    REQUEST_ID,
    REQUESTS,
    STARTED_NS,
    Envelope,
    request_rows,
)


def test_headers_round_trip_with_the_callers_own_headers() -> None:
    env = Envelope(
        request_id="r1",
        version="v2",
        started_ns=123,
        error={"type": "X"},
        shadow="chal",
        reply_shadows=True,
        reply_uncommitted=True,
        extra={"trace": b"\x00\x01"},
    )
    assert Envelope.parse(env.headers()) == env


def test_missing_or_empty_headers_get_defaults() -> None:
    env = Envelope.parse([(REQUEST_ID, b""), (STARTED_NS, b"")], default_request_id="t-0-5")
    assert (env.request_id, env.started_ns, env.error, env.shadow) == ("t-0-5", 0, None, None)
    assert env.content_type == "application/vnd.apache.arrow.stream"
    assert not Envelope.parse(None).reply_shadows
    assert not Envelope.parse(None).reply_uncommitted


def test_a_consumed_record_without_a_request_id_is_named_by_its_position() -> None:
    def record(headers: list[tuple[str, bytes]]) -> ConsumerRecord:
        return ConsumerRecord(
            topic="default.p.in",
            partition=2,
            offset=41,
            timestamp=0,
            timestamp_type=0,
            key=None,
            value=b"",
            checksum=None,
            serialized_key_size=0,
            serialized_value_size=0,
            headers=headers,
        )

    assert Envelope.of(record([])).request_id == "default.p.in-2-41"
    assert Envelope.of(record([(REQUEST_ID, b"")])).request_id == "default.p.in-2-41"
    assert Envelope.of(record([(REQUEST_ID, b"mine")])).request_id == "mine"


def test_the_last_of_repeated_headers_wins() -> None:
    env = Envelope.parse(
        [
            (REQUEST_ID, b"a"),
            (REQUEST_ID, b"b"),
            (REPLY_SHADOWS, b"1"),
            (CONTENT_TYPE, b"application/json"),
        ]
    )
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


@pytest.mark.parametrize(
    "headers",
    [
        [("weir-started-ns", b"abc")],
        [("weir-started-ns", b"9" * 5000)],
        [("weir-started-ns", b"-5")],
        [("weir-error", b"{not json")],
        [("weir-error", b"[1, 2]")],
        [("weir-error", b'{"type": 1}')],
        [("weir-error", b"[" * 100_000)],
        [("weir-base64", b"{not json")],
        [("weir-base64", b'"raw"')],
        [("weir-base64", b"[1]")],
    ],
)
def test_headers_weir_never_writes_are_ignored_not_raised(headers: list[tuple[str, bytes]]) -> None:
    env = Envelope.parse([("weir-request-id", b"r1"), *headers])
    assert env.request_id == "r1" and env.started_ns == 0 and env.error is None
    assert env.base64_columns == ()


def test_a_json_answers_headers_round_trip_and_arrow_ones_stay_as_they_were() -> None:
    env = Envelope(
        "r1",
        content_type="application/json; format=pandas-records",
        reply_type="application/json; format=pandas-records",
        base64_columns=("in.raw", "out.png"),
    )
    assert Envelope.parse(env.headers()) == env
    assert dict(env.headers())[BASE64] == b'["in.raw", "out.png"]'
    assert REPLY_TYPE not in dict(Envelope("r2").headers())  # Arrow: no more headers than before
    assert BASE64 not in dict(Envelope("r2").headers())


def test_a_coalesced_records_requests_round_trip_and_other_headers_stay_apart() -> None:
    env = Envelope("whole", requests=(("a", 2), ("b", 0), ("c", 3)), extra={"mine": b"1"})
    back = Envelope.parse(env.headers())
    assert back == env
    assert back.requests == (("a", 2), ("b", 0), ("c", 3))
    assert Envelope.parse(Envelope("alone").headers()).requests is None


@pytest.mark.parametrize("raw", [b"not json", b"{}", b'[["a"]]', b"[]", b'[["a", -1]]'])
def test_a_malformed_requests_header_leaves_the_record_one_request(raw: bytes) -> None:
    env = Envelope.parse([(REQUEST_ID, b"r"), (REQUESTS, raw)])
    assert env.request_id == "r" and env.requests is None


def test_request_rows_gives_each_rows_own_request_and_index_in_it() -> None:
    requests = (("a", 2), ("b", 0), ("c", 3))
    which, local = request_rows(requests, [0, 1, 2, 3, 4])
    assert which.tolist() == [0, 0, 2, 2, 2] and local.tolist() == [0, 1, 0, 1, 2]
    # A split's part: some rows, in any order.
    which, local = request_rows(requests, [4, 1])
    assert which.tolist() == [2, 0] and local.tolist() == [2, 1]
    which, local = request_rows(requests, [])
    assert which.tolist() == [] and local.tolist() == []


def test_request_rows_refuses_a_row_the_header_does_not_list() -> None:
    with pytest.raises(ValueError, match="row 5 is outside the 5 rows"):
        request_rows((("a", 2), ("c", 3)), [0, 5])
