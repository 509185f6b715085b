"""streams/agents/log.py: the log rows of a failed request, stored like any other rows."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from engine import codecs
from streams.agents.log import META_ERROR, error_rows
from streams.logstore import LogStore
from streams.messages import Envelope

ERROR = {"step": "pre", "model": "pre@12345678", "type": "StepFailed",
         "message": "step 'pre' failed: poison row", "attempts": "3"}


def test_a_failed_request_gets_one_row_per_input_row_with_the_error(tmp_path: Path) -> None:
    carried = pa.RecordBatch.from_pydict({"in.x": [1.0, 2.0]})
    env = Envelope(request_id="r1", version="v1", started_ns=1_000_000, error=ERROR)
    batch = error_rows(env, codecs.encode(carried, codecs.ARROW_STREAM), time_ms=5)
    assert batch.column("request_id").to_pylist() == ["r1", "r1"]
    assert batch.column("row").to_pylist() == [0, 1]
    assert batch.column("in.x").to_pylist() == [1.0, 2.0]
    assert batch.column("anomaly.count").to_pylist() == [1, 1]
    assert batch.column("metadata.model").to_pylist() == ["pre@12345678"] * 2
    assert batch.column("metadata.elapsed_ns").to_pylist() == [4_000_000] * 2
    assert "poison row" in batch.column(META_ERROR)[0].as_py()

    store = LogStore(tmp_path)
    store.append("ws", "p", batch)
    failed = store.query("ws", "p", valid=False)
    assert failed.num_rows == 2 and failed.column(META_ERROR)[0].as_py().startswith("StepFailed")


def test_an_unreadable_request_gets_one_row(tmp_path: Path) -> None:
    env = Envelope(request_id="r2", version="v1", error=ERROR)
    batch = error_rows(env, b"", time_ms=5)
    assert batch.num_rows == 1 and batch.column("row").to_pylist() == [0]
    LogStore(tmp_path).append("ws", "p", batch)
