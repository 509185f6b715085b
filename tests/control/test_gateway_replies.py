"""control/gateway.py without a broker: answers in parts, repeats, and challengers' answers."""

from __future__ import annotations

import pyarrow as pa

from control.gateway import _Pending
from engine import codecs
from streams.messages import Envelope


def _part(rows: list[int], column: str = "out.y", scale: float = 1.0) -> bytes:
    batch = pa.RecordBatch.from_pydict({column: [r * scale for r in rows],
                                        "metadata.row": pa.array(rows, pa.int32())})
    return codecs.encode(batch, codecs.ARROW_STREAM)


def test_a_split_answer_is_complete_when_every_row_came_back_and_is_in_input_order() -> None:
    pending = _Pending(5, [])
    pending.add(Envelope("r"), _part([1, 3]))
    assert not pending.answered.is_set()
    pending.add(Envelope("r"), _part([1, 3]))  # a repeat after a crash changes nothing
    pending.add(Envelope("r"), _part([0, 2, 4]))
    assert pending.answered.is_set()
    result = pending.result()
    assert result.column("metadata.row").to_pylist() == [0, 1, 2, 3, 4]
    assert result.column("out.y").to_pylist() == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_an_error_in_any_part_answers_the_request() -> None:
    pending = _Pending(4, [])
    pending.add(Envelope("r"), _part([0, 1]))
    pending.add(Envelope("r", error={"step": "s", "message": "boom"}), b"")
    assert pending.answered.is_set() and pending.answer.error is not None


def test_challengers_answers_join_the_champions_by_row() -> None:
    pending = _Pending(3, ["c", "bad", "slow"])
    pending.add(Envelope("r"), _part([0, 1, 2]))
    assert pending.answered.is_set() and not pending.shadowed.is_set()
    pending.add(Envelope("r", shadow="c"), _part([2, 0, 1], "out_c.y", scale=10))
    pending.add(Envelope("r", shadow="bad", error={"message": "challenger broke"}), b"")
    pending.add(Envelope("r", shadow="unknown"), _part([0], "out_unknown.y"))  # ignored
    assert not pending.shadowed.is_set()  # "slow" has not answered
    result = pending.result()
    assert result.column("out_c.y").to_pylist() == [0.0, 10.0, 20.0]
    assert result.column("out_bad.error").to_pylist() == ["challenger broke"] * 3
    assert not any(n.startswith(("out_slow.", "out_unknown.")) for n in result.schema.names)
    pending.add(Envelope("r", shadow="slow"), _part([0, 1, 2], "out_slow.y"))
    assert pending.shadowed.is_set()
