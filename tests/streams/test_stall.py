from streams.stall import Stall


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_value_that_keeps_changing_never_stalls() -> None:
    clock = Clock()
    stall = Stall(5.0, clock)
    for n in range(20):
        clock.now += 3.0
        assert not stall.seen(n)


def test_a_value_that_stands_still_for_the_limit_stalls() -> None:
    clock = Clock()
    stall = Stall(5.0, clock)
    assert not stall.seen(7)
    clock.now += 4.9
    assert not stall.seen(7)
    clock.now += 0.1
    assert stall.seen(7)
    assert stall.still_s == 5.0


def test_a_change_restarts_the_count() -> None:
    clock = Clock()
    stall = Stall(5.0, clock)
    stall.seen(1)
    clock.now += 4.0
    assert not stall.seen(2)
    clock.now += 4.0
    assert not stall.seen(2)
    clock.now += 1.0
    assert stall.seen(2)
