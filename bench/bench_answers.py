"""What a stage's answer path costs per row, in process: a revision (`--now`, default HEAD)
against a baseline revision, on Arrow and JSON requests.

The input stage of a one-step pipeline (the cheap diabetes regressor) runs records as a
worker's loop hands them over, with no broker: decode, the model, the result rows, the
answers encoded and their records built (`Stage.receive`, `chunk`, `run`, `outgoing`).
Each tree (`--now` and `--baseline`, both exported with `git archive`: a working tree
measured against an export ran ~14% slower per row in an A/A run, the same code) runs in a
process of its own, in turns (each first every other round), `--rounds` times; each
workload's rows per CPU second (the process's CPU time: other load on the machine moves it
less than wall time) is the best of a round's repeats, and the ratio is `--now`'s median
over the baseline's. Workloads: 1-row and 256-row Arrow requests (answered in Arrow by both
trees), and 1-row JSON requests (a baseline from before answers in the request's format
answers them in Arrow). Run `--baseline X --now X` first to see how far the machine's noise
moves the ratio.

Prints a table and saves ``<out>/answers-<UTC timestamp>.json``.

    .venv/bin/python bench/bench_answers.py --baseline main --now HEAD
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from _results import RESULTS, save

ROOT = Path(__file__).resolve().parent.parent
WORKLOADS = {
    "arrow, 1-row": ("arrow", 1, 2000),
    "arrow, 256-row": ("arrow", 256, 64),
    "json, 1-row": ("json", 1, 2000),
}
"""name: (request format, rows per record, records per repeat)."""

_RUN = """
import json, sys, tempfile, time
from pathlib import Path
import numpy as np
from aiokafka.structs import ConsumerRecord
from control.demo.models import diabetes_regressor
from engine import codecs
from engine.definition import ModelRef, ModelStep, PipelineSpec
from engine.pipeline import load_pipeline
from engine.runtimes.base import sha256_file
from streams.plan import Layout, worker_stages
from streams.settings import WorkerSettings
from streams.stage import StepCounters
from streams.topics import TopicMap

workloads, seconds = json.loads(sys.argv[1]), float(sys.argv[2])
model = diabetes_regressor(Path(tempfile.mkdtemp()) / "cheap.onnx")
ref = ModelRef(name="cheap", version="1", sha=sha256_file(model), runtime="onnx")
pipeline = load_pipeline("v1", PipelineSpec(steps=[ModelStep(model=ref)]), lambda _: model)
(stage,) = worker_stages(pipeline, Layout("ws", "p", "d1"), TopicMap.load(), "main",
                         WorkerSettings(max_batch_rows=256))
rng = np.random.default_rng(1)

def record(i, kind, rows):
    x = rng.random((rows, 10), dtype=np.float32)
    if kind == "json":
        value, ct = json.dumps([{"tensor": r.tolist()} for r in x]).encode(), codecs.PANDAS_RECORDS
    else:
        value = codecs.encode(codecs.batch_from_arrays({"tensor": x}), codecs.ARROW_STREAM)
        ct = codecs.ARROW_STREAM
    return ConsumerRecord("ws.p.in", 0, i, 1_700_000_000_000, 0, b"k", value, None, 0,
                          len(value), (("content-type", ct.encode()),
                                       ("weir-request-id", f"r{i}".encode())))

out = {}
for name, (kind, rows, count) in workloads.items():
    records = [record(i, kind, rows) for i in range(count)]
    best, until = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < until:
        began = time.process_time()
        incoming, done, sent = stage.receive(records), 0, 0
        while done < len(incoming):
            chunk = stage.chunk(incoming, done)
            stage.run(chunk)
            sent += len(stage.outgoing(chunk, StepCounters()))
            done += len(chunk)
        assert sent == count
        best = max(best, rows * count / (time.process_time() - began))
    out[name] = best
print(json.dumps(out))
"""


def _export(rev: str, into: Path) -> Path:
    """The tree of `rev`, written under `into` (git archive: the repository is untouched)."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev], check=True, capture_output=True
    ).stdout
    into.mkdir()
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def _round(tree: Path, seconds: float) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", _RUN, json.dumps(WORKLOADS), str(seconds)],
        cwd=tree,
        env={**os.environ, "PYTHONPATH": str(tree)},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--baseline", default="main", help="the revision to compare with")
    parser.add_argument("--now", default="HEAD", help="the revision measured")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0, help="per workload and round")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    revs = {
        which: subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", rev],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        for which, rev in (("baseline", args.baseline), ("now", args.now))
    }
    figures: dict[str, dict[str, list[float]]] = {"baseline": {}, "now": {}}
    with tempfile.TemporaryDirectory() as folder:
        trees = {which: _export(rev, Path(folder) / which) for which, rev in revs.items()}
        for turn in range(args.rounds):  # in turns, each first every other round: the
            order = list(trees.items())  # machine's drift hits both alike
            for which, tree in order[::-1] if turn % 2 else order:
                for name, rows_s in _round(tree, args.seconds).items():
                    figures[which].setdefault(name, []).append(rows_s)
    result: dict[str, Any] = {**revs, "rounds": args.rounds, "workloads": {}}
    print(f"{'rows per CPU s':<16} {'baseline':>12} {'now':>12} {'now/baseline':>13}")
    for name in WORKLOADS:
        before = statistics.median(figures["baseline"][name])
        after = statistics.median(figures["now"][name])
        result["workloads"][name] = {
            "baseline_rows_per_cpu_s": figures["baseline"][name],
            "now_rows_per_cpu_s": figures["now"][name],
            "ratio_of_medians": after / before,
        }
        print(f"{name:<16} {before:>12,.0f} {after:>12,.0f} {after / before:>13.3f}")
    print(f"saved {save('answers', result, args.out)}")


if __name__ == "__main__":
    main()
