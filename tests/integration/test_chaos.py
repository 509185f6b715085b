"""Faults in combination under load (bench/_chaos.py): one fixed seed on each broker.

The stack is the run's own (its broker, Redis and server are killed and restarted), so
this test does not use the session's. A failure prints the report: replay its seed with
`bench/chaos.py --broker <broker> --seed <seed> --minutes 1 --keep`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench._chaos import run_chaos

pytestmark = pytest.mark.slow

SEED = 29
SECONDS = 60.0


def test_the_stream_comes_back_after_faults_in_combination(broker: str, tmp_path: Path) -> None:
    report = run_chaos(tmp_path, broker, seed=SEED, seconds=SECONDS)  # type: ignore[arg-type]
    applied = {fault["kind"] for fault in report["faults"]}
    assert len(applied) >= 5, applied  # the seed's schedule mixes kinds of fault
    assert report["sent"] > 0 and report["answered"] == report["sent"]
    assert report["problems"] == [], json.dumps(report, indent=1, default=str)[:20_000]
