"""streams/log_writer.py: rows are kept by the last log policy read while none can be read."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from engine.errors import WeirError
from streams.log_policy import LogPolicy
from streams.log_schema import REQUIRED_SCHEMA
from streams.log_writer import LogWriter
from streams.logstore import LogStore

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
    writer = LogWriter(LogStore(tmp_path), policies=registry)
    [kept] = writer.kept("ws", "p", [ROWS])
    assert kept.schema.names == ["in.n", "out.y"]
    registry.up = False
    [kept] = writer.kept("ws", "p", [ROWS])
    assert kept.schema.names == ["in.n", "out.y"], "the known policy was not applied"
    # A pipeline whose policy was never read gets the default one (it bounds rows too).
    [other] = writer.kept("ws", "q", [ROWS])
    assert other.schema.names == ["in.png", "in.n", "out.y"]
    registry.up, registry.policy = True, LogPolicy()
    [kept] = writer.kept("ws", "p", [ROWS])
    assert kept.schema.names == ["in.png", "in.n", "out.y"], "the policy read again was not used"


def log_rows(request_id: str, y: object) -> pa.RecordBatch:
    """One log row with every required column and an output `out.y`."""
    columns = {
        f.name: pa.array(
            [request_id if f.name == "request_id" else "v1" if pa.types.is_string(f.type) else 0],
            f.type,
        )
        for f in REQUIRED_SCHEMA
    }
    return pa.RecordBatch.from_pydict({**columns, "out.y": [y]})


def test_rows_that_clash_with_the_store_keep_the_required_columns_and_the_rest_stay_whole(
    tmp_path: Path,
) -> None:
    store = LogStore(tmp_path)
    writer = LogWriter(store)
    writer.write({("ws", "p"): [log_rows("a", 1.0)]})
    writer.write({("ws", "p"): [log_rows("b", "text"), log_rows("c", 2.0)]})
    stored = store.query("ws", "p", limit=None)
    assert dict(zip(stored["request_id"].to_pylist(), stored["out.y"].to_pylist())) == {
        "a": 1.0,
        "b": None,
        "c": 2.0,
    }
