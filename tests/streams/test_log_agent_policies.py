"""streams/log_agent.py: rows are kept by the last log policy read while none can be read."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from engine.errors import WeirError
from streams.log_agent import LogAgent
from streams.log_policy import LogPolicy
from streams.logstore import LogStore
from streams.settings import WorkerSettings
from streams.topics import TopicMap

ROWS = pa.RecordBatch.from_pydict({"in.png": [b"x" * 10], "in.n": [1.0], "out.y": [2.0]})


class Registry:
    """Log policies as the registry gives them, until Redis goes away."""

    def __init__(self) -> None:
        self.up = True
        self.policy = LogPolicy(exclude=["png"])

    def __call__(self, workspace: str, pipeline: str) -> LogPolicy:
        if not self.up:
            raise WeirError("Redis at redis://127.0.0.1:1/0 is unreachable")
        return self.policy


def test_the_last_policy_read_serves_while_none_can_be_read(tmp_path: Path) -> None:
    registry = Registry()
    agent = LogAgent(WorkerSettings(kafka_bootstrap="127.0.0.1:1"), TopicMap.load(),
                     LogStore(tmp_path), policies=registry)
    [kept] = agent._kept("ws", "p", [ROWS])
    assert kept.schema.names == ["in.n", "out.y"]
    registry.up = False
    [kept] = agent._kept("ws", "p", [ROWS])
    assert kept.schema.names == ["in.n", "out.y"], "the known policy was not applied"
    # A pipeline whose policy was never read gets the default one (it bounds rows too).
    [other] = agent._kept("ws", "q", [ROWS])
    assert other.schema.names == ["in.png", "in.n", "out.y"]
    registry.up, registry.policy = True, LogPolicy()
    [kept] = agent._kept("ws", "p", [ROWS])
    assert kept.schema.names == ["in.png", "in.n", "out.y"], "the policy read again was not used"
