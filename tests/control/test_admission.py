"""control/_admission.py: a pipeline's measured answer rate bounds what the gateway admits."""

from __future__ import annotations

import pytest

from control._admission import Capacity


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def answer_one_at_a_time(capacity: Capacity, clock: Clock, count: int, each_s: float) -> None:
    for _ in range(count):
        capacity.started()
        clock.now += each_s
        capacity.finished(answered=True)


def admitted(capacity: Capacity, deadline_s: float) -> int:
    """How many requests, arriving together, are let in."""
    count = 0
    while capacity.expected_wait_s() <= deadline_s:
        capacity.started()
        count += 1
    return count


def test_nothing_is_refused_before_the_pipeline_has_answered() -> None:
    capacity = Capacity(clock=Clock())
    assert capacity.rate() is None and capacity.expected_wait_s() == 0.0
    capacity.started()
    assert capacity.expected_wait_s() == 0.0


def test_the_bound_counts_the_queue_ahead_twice_and_the_requests_own_answer_once() -> None:
    clock = Clock()
    capacity = Capacity(half_life_s=1e12, clock=clock)
    answer_one_at_a_time(capacity, clock, 10, 0.010)  # 100 answers per busy second
    assert capacity.rate() == pytest.approx(100.0)
    # the k-th let in waits ~(2 (k - 1) + 1) / 100 s: k = 1..3 fit 0.055 s, the 4th not
    assert admitted(capacity, deadline_s=0.055) == 3
    assert capacity.in_flight == 3


def test_a_slow_pipeline_asked_one_request_at_a_time_is_not_refused_a_deadline_it_meets() -> None:
    clock = Clock()
    capacity = Capacity(clock=clock)
    for _ in range(10):  # 3 s an answer, each request sent as the last one is answered
        assert capacity.expected_wait_s() <= 5.0
        capacity.started()
        clock.now += 3.0
        capacity.finished(answered=True)


def test_idle_time_does_not_lower_the_rate_and_concurrency_raises_it() -> None:
    clock = Clock()
    capacity = Capacity(half_life_s=1e12, clock=clock)
    answer_one_at_a_time(capacity, clock, 10, 0.010)
    clock.now += 60.0  # nothing in flight: not busy time
    assert capacity.rate() == pytest.approx(100.0)
    for _ in range(10):  # ten at once, all answered within 10 ms
        capacity.started()
    clock.now += 0.010
    for _ in range(10):
        capacity.finished(answered=True)
    assert capacity.rate() == pytest.approx(20 / 0.11)


def test_requests_that_time_out_count_as_busy_time_without_answers() -> None:
    clock = Clock()
    capacity = Capacity(half_life_s=1e12, clock=clock)
    answer_one_at_a_time(capacity, clock, 10, 0.010)
    capacity.started()
    clock.now += 0.1
    capacity.finished(answered=False)
    assert capacity.rate() == pytest.approx(50.0)


def test_the_rate_follows_a_pipeline_that_slowed_down() -> None:
    clock = Clock()
    capacity = Capacity(half_life_s=1.0, clock=clock)
    answer_one_at_a_time(capacity, clock, 500, 0.002)  # 500/s for a second
    answer_one_at_a_time(capacity, clock, 100, 0.100)  # then 10/s for ten seconds
    rate = capacity.rate()
    assert rate is not None and 10 <= rate < 11


def test_a_pipeline_measured_slow_gets_a_lone_request_through_and_is_measured_again() -> None:
    clock = Clock()
    capacity = Capacity(half_life_s=2.0, clock=clock)
    answer_one_at_a_time(capacity, clock, 2, 0.010)
    for _ in range(17):  # a burst under load: all timed out after their 2 s deadline
        capacity.started()
    clock.now += 2.0
    for _ in range(17):
        capacity.finished(answered=False)
    rate = capacity.rate()
    assert rate is not None and 1 / rate > 1.0  # alone, a request would wait past 1 s
    assert admitted(capacity, deadline_s=1.0) == 0  # just measured: refused
    clock.now += 60.0  # nothing admitted for a minute: decay keeps the ratio
    assert capacity.rate() == pytest.approx(rate)
    assert admitted(capacity, deadline_s=1.0) == 1  # a lone request goes in
    clock.now += 0.010
    capacity.finished(answered=True)  # answered at once: measured faster
    assert admitted(capacity, deadline_s=1.0) > 1


def test_the_drain_time_is_how_long_the_queue_ahead_takes_to_shrink_to_fit() -> None:
    clock = Clock()
    capacity = Capacity(half_life_s=1e12, clock=clock)
    answer_one_at_a_time(capacity, clock, 10, 0.010)  # 100/s
    assert capacity.drain_s(deadline_s=0.055) == 0.0  # let in now
    for _ in range(10):
        capacity.started()
    # 10 in flight: a new one would wait 0.21 s; with 0.055 s it fits once 7.75 have left
    assert capacity.drain_s(deadline_s=0.055) == pytest.approx(0.0775)
