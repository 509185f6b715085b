"""control/_coalesce.py: which concurrent requests go to Kafka together."""

from __future__ import annotations

import asyncio

import pyarrow as pa

from control._coalesce import Coalescer, Waiting
from control._replies import Pending


def _waiting(name: str, rows: int, column: str = "x") -> Waiting:
    batch = pa.RecordBatch.from_pydict({column: [1.0] * rows})
    return Waiting(name, batch, Pending(rows, []))


def test_a_record_takes_requests_in_order_up_to_max_rows_and_of_one_schema() -> None:
    async def main() -> list[list[str]]:
        async def never(group: list[Waiting]) -> None:
            raise AssertionError("not sent in this test")

        coalescer = Coalescer(never, max_rows=4, linger_s=0)
        queued = [
            _waiting("a", 1),
            _waiting("b", 2),
            _waiting("c", 2),
            _waiting("d", 1),
            _waiting("e", 1, column="y"),
            _waiting("f", 9),
            _waiting("g", 1),
        ]
        queued[3].sent.cancel()  # its caller gave up
        for waiting in queued:
            coalescer._queue.append(waiting)
        groups = []
        while group := coalescer.take():
            groups.append([w.request_id for w in group])
        return groups

    assert asyncio.run(main()) == [["a", "b"], ["c"], ["e"], ["f"], ["g"]]


def test_requests_that_arrive_while_a_record_is_sent_go_together_in_the_next() -> None:
    async def main() -> list[list[str]]:
        sent: list[list[str]] = []
        release = asyncio.Event()

        async def send(group: list[Waiting]) -> None:
            sent.append([w.request_id for w in group])
            await release.wait()

        coalescer = Coalescer(send, max_rows=100, linger_s=0)
        first = _waiting("first", 1)
        coalescer.submit(first)
        await asyncio.sleep(0)  # the first record is on its way
        later = [_waiting(name, 1) for name in ("b", "c", "d")]
        for waiting in later:
            coalescer.submit(waiting)
        release.set()
        await asyncio.gather(first.sent, *(w.sent for w in later))
        await coalescer.stop()
        return sent

    assert asyncio.run(main()) == [["first"], ["b", "c", "d"]]


def test_a_failed_send_fails_its_requests_and_the_next_record_still_goes() -> None:
    async def main() -> tuple[BaseException | None, bool]:
        async def send(group: list[Waiting]) -> None:
            if group[0].request_id == "bad":
                raise ConnectionError("broker gone")

        coalescer = Coalescer(send, max_rows=1, linger_s=0)
        bad, good = _waiting("bad", 1), _waiting("good", 1)
        coalescer.submit(bad)
        coalescer.submit(good)
        await asyncio.gather(bad.sent, good.sent, return_exceptions=True)
        await coalescer.stop()
        return bad.sent.exception(), good.sent.done() and good.sent.exception() is None

    error, good_sent = asyncio.run(main())
    assert isinstance(error, ConnectionError) and good_sent
