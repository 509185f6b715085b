"""streams/commits.py without a broker: offsets commit in order, only after delivery."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import CommitFailedError, KafkaConnectionError

from streams.commits import OrderedCommits
from streams.errors import DeliveryFailed

A = TopicPartition("in", 0)
B = TopicPartition("in", 1)


class _Broker:
    """Records each commit; fails the next ones with the given errors."""

    def __init__(self, *failures: Exception) -> None:
        self.commits: list[dict[TopicPartition, int]] = []
        self._failures = list(failures)

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        if self._failures:
            raise self._failures.pop(0)
        self.commits.append(dict(offsets))


def _future(done: bool = False) -> asyncio.Future[object]:
    future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
    if done:
        future.set_result(None)
    return future


async def _started(commits: OrderedCommits) -> asyncio.Task[None]:
    task = asyncio.create_task(commits.run())
    await asyncio.sleep(0)
    return task


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_nothing_is_committed_before_everything_ahead_of_it_is_delivered() -> None:
    broker = _Broker()
    commits = OrderedCommits(broker.commit)
    task = await _started(commits)
    slow = _future()
    commits.add([slow], {A: 5})
    commits.add([_future(done=True)], {A: 9, B: 3})  # delivered, but behind the slow one
    await asyncio.sleep(0.05)
    assert broker.commits == []
    assert commits.pending == 2
    slow.set_result(None)
    await commits.flush()
    assert broker.commits == [{A: 9, B: 3}]  # both in one commit
    assert commits.pending == 0
    await _stop(task)


async def test_a_failed_delivery_commits_nothing_after_it_and_flush_says_so() -> None:
    broker = _Broker()
    commits = OrderedCommits(broker.commit)
    task = await _started(commits)
    commits.add([_future(done=True)], {A: 1})
    await commits.flush()
    failed = _future()
    failed.set_exception(KafkaConnectionError("broker gone"))
    commits.add([failed], {A: 2})
    commits.add([_future(done=True)], {A: 3})
    with pytest.raises(DeliveryFailed, match="broker gone"):
        await commits.flush()
    with pytest.raises(DeliveryFailed):
        await task
    assert broker.commits == [{A: 1}]
    with pytest.raises(DeliveryFailed):
        commits.add([_future(done=True)], {A: 4})


async def test_a_commit_refused_after_a_rebalance_is_dropped_and_others_go_on() -> None:
    broker = _Broker(CommitFailedError("rebalanced"))
    commits = OrderedCommits(broker.commit)
    task = await _started(commits)
    commits.add([_future(done=True)], {A: 1})
    await commits.flush()
    commits.add([_future(done=True)], {B: 7})
    await commits.flush()
    assert broker.commits == [{B: 7}]  # A's next owner reads it again: a repeat, not a loss
    await _stop(task)


async def test_a_commit_that_fails_for_a_passing_reason_is_tried_again() -> None:
    broker = _Broker(KafkaConnectionError("blip"), KafkaConnectionError("blip"))
    commits = OrderedCommits(broker.commit)
    task = await _started(commits)
    commits.add([_future(done=True)], {A: 1})
    await asyncio.sleep(0.01)
    assert commits.pending == 1  # not committed yet: a drain keeps waiting
    commits.add([_future(done=True)], {B: 7})
    await commits.flush()
    assert broker.commits == [{A: 1, B: 7}]
    assert commits.pending == 0
    await _stop(task)


async def test_a_busy_stream_is_committed_once_per_interval_unless_flushed() -> None:
    broker = _Broker()
    commits = OrderedCommits(broker.commit, interval_s=0.3)
    task = await _started(commits)
    commits.add([_future(done=True)], {A: 1})
    await asyncio.sleep(0.05)  # the first commit goes at once...
    for offset in range(2, 12):
        commits.add([_future(done=True)], {A: offset})
        await asyncio.sleep(0.01)
    assert broker.commits == [{A: 1}]  # ...the next ones wait for the interval
    await commits.flush()  # a rebalance or a stop does not wait
    assert broker.commits == [{A: 1}, {A: 11}]
    await _stop(task)


async def test_sends_without_offsets_of_their_own_are_waited_for_but_commit_nothing() -> None:
    broker = _Broker()  # a real consumer refuses an empty commit
    commits = OrderedCommits(broker.commit)
    task = await _started(commits)
    sent = _future()
    commits.add([sent], {})  # sends with no offsets of their own
    commits.add([_future(done=True)], {A: 4})
    await asyncio.sleep(0.05)
    assert broker.commits == []  # still behind the earlier send
    sent.set_result(None)
    await commits.flush()
    assert broker.commits == [{A: 4}]
    commits.add([_future(done=True)], {})
    await commits.flush()
    assert broker.commits == [{A: 4}] and commits.pending == 0
    await _stop(task)
