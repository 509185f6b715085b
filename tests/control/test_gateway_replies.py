"""control/_replies.py without a broker: answers in parts, repeats, challengers' answers, and
the replies of coalesced records split back per request; and JSON replies read back."""

from __future__ import annotations

import pyarrow as pa

from control._replies import Group, Pending, _decoded
from control.sdk.tail import _answer
from engine.answers import encode_answer
from engine.codecs import PANDAS_RECORDS
from streams.messages import Envelope


def _part(rows: list[int], column: str = "out.y", scale: float = 1.0) -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict(
        {column: [r * scale for r in rows], "metadata.row": pa.array(rows, pa.int32())}
    )


def test_a_split_answer_is_complete_when_every_row_came_back_and_is_in_input_order() -> None:
    pending = Pending(5, [])
    pending.add(Envelope("r"), _part([1, 3]))
    assert not pending.answered.is_set()
    pending.add(Envelope("r"), _part([1, 3]))  # a repeat after a crash changes nothing
    pending.add(Envelope("r"), _part([0, 2, 4]))
    assert pending.answered.is_set()
    result = pending.result()
    assert result.column("metadata.row").to_pylist() == [0, 1, 2, 3, 4]
    assert result.column("out.y").to_pylist() == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_an_answer_in_one_part_comes_back_in_input_order() -> None:
    in_order, shuffled = Pending(3, []), Pending(3, [])
    in_order.add(Envelope("r"), _part([0, 1, 2]))
    shuffled.add(Envelope("r"), _part([2, 0, 1]))
    for pending in (in_order, shuffled):
        result = pending.result()
        assert result.column("metadata.row").to_pylist() == [0, 1, 2]
        assert result.column("out.y").to_pylist() == [0.0, 1.0, 2.0]


def test_an_error_in_any_part_answers_the_request() -> None:
    pending = Pending(4, [])
    pending.add(Envelope("r"), _part([0, 1]))
    pending.add(Envelope("r", error={"step": "s", "message": "boom"}), None)
    assert pending.answered.is_set() and pending.answer.error is not None


def test_challengers_answers_join_the_champions_by_row() -> None:
    pending = Pending(3, ["c", "bad", "slow"])
    pending.add(Envelope("r"), _part([0, 1, 2]))
    assert pending.answered.is_set() and not pending.shadowed.is_set()
    pending.add(Envelope("r", shadow="c"), _part([2, 0, 1], "out_c.y", scale=10))
    pending.add(Envelope("r", shadow="bad", error={"message": "challenger broke"}), None)
    pending.add(Envelope("r", shadow="unknown"), _part([0], "out_unknown.y"))  # ignored
    assert not pending.shadowed.is_set()  # "slow" has not answered
    result = pending.result()
    assert result.column("out_c.y").to_pylist() == [0.0, 10.0, 20.0]
    assert result.column("out_bad.error").to_pylist() == ["challenger broke"] * 3
    assert not any(n.startswith(("out_slow.", "out_unknown.")) for n in result.schema.names)
    pending.add(Envelope("r", shadow="slow"), _part([0, 1, 2], "out_slow.y"))
    assert pending.shadowed.is_set()


def test_a_coalesced_records_replies_reach_each_request_with_its_own_rows_in_order() -> None:
    a, b, c = Pending(2, []), Pending(1, []), Pending(3, [])
    group = Group([("a", a), ("b", b), ("c", c)])
    assert group.requests == (("a", 2), ("b", 1), ("c", 3))
    # A split answers the record's six rows in two parts, each in row order of its arm.
    group.add(Envelope("whole"), _part([1, 3, 5]))
    assert not any(p.answered.is_set() for p in (a, b, c))
    group.add(Envelope("whole"), _part([0, 2, 4]))
    assert all(p.answered.is_set() for p in (a, b, c))
    assert a.result().column("out.y").to_pylist() == [0.0, 1.0]
    assert a.result().column("metadata.row").to_pylist() == [0, 1]
    assert b.result().column("out.y").to_pylist() == [2.0]
    assert b.result().column("metadata.row").to_pylist() == [0]
    assert c.result().column("out.y").to_pylist() == [3.0, 4.0, 5.0]
    assert c.result().column("metadata.row").to_pylist() == [0, 1, 2]


def test_an_error_reply_to_a_coalesced_record_reaches_every_request_in_it() -> None:
    a, b = Pending(1, []), Pending(1, [])
    group = Group([("a", a), ("b", b)])
    group.add(Envelope("whole", error={"step": "s", "message": "boom"}), None)
    assert a.answered.is_set() and b.answered.is_set()
    assert a.answer.error is not None and b.answer.error is not None
    assert not group.leave() and group.leave()  # the last to leave lets the record go


def test_a_json_reply_reads_as_its_arrow_form_for_the_gateway_and_weir_tail() -> None:
    part = _part([0, 1]).append_column("in.raw", pa.array([b"\x00", b"\xff"]))
    value, named = encode_answer(part, PANDAS_RECORDS)
    env = Envelope("r1", content_type=PANDAS_RECORDS, base64_columns=named)
    assert _decoded(env, value) == part  # a pipeline deployed with result_format("json")
    tailed = _answer(env, value)
    assert tailed is not None and tailed.column("in.raw").to_pylist() == [b"\x00", b"\xff"]
    assert tailed.column("request_id").to_pylist() == ["r1", "r1"]
