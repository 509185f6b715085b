"""streams/outage.py: a failure retried every round is said once, and so is its end."""

from __future__ import annotations

import logging

import pytest

from engine.errors import WeirError
from streams.outage import Outage

log = logging.getLogger("tests.outage")


def test_a_failure_is_said_once_until_it_works_again(caplog: pytest.LogCaptureFixture) -> None:
    outage = Outage(log, "heartbeats of worker w-1")
    with caplog.at_level(logging.WARNING, logger=log.name):
        for _ in range(5):
            outage.failed(WeirError("Redis at redis://127.0.0.1:1/0 is unreachable"))
        assert outage.since is not None
        for _ in range(3):
            outage.ok()
        outage.failed(WeirError("unreachable again"))
    said = [r.getMessage() for r in caplog.records]
    assert said == [
        "heartbeats of worker w-1 failed: Redis at redis://127.0.0.1:1/0 is unreachable; "
        "retrying quietly until it works again",
        "heartbeats of worker w-1 succeeded again, after 0s of failures",
        "heartbeats of worker w-1 failed: unreachable again; retrying quietly until it works again",
    ]
    assert all(r.exc_info is None for r in caplog.records)  # weir's own errors say it all


def test_an_unexpected_failure_comes_with_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    outage = Outage(log, "reading log policies")
    with caplog.at_level(logging.WARNING, logger=log.name):
        try:
            raise KeyError("policy")
        except KeyError as exc:
            outage.failed(exc)
    [record] = caplog.records
    assert "KeyError: 'policy'" in record.getMessage() and record.exc_info is not None


def test_working_all_along_says_nothing(caplog: pytest.LogCaptureFixture) -> None:
    outage = Outage(log, "worker supervision")
    with caplog.at_level(logging.DEBUG, logger=log.name):
        outage.ok()
        outage.ok()
    assert caplog.records == [] and outage.since is None
