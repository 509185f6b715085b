"""Where benchmarks save their figures: one JSON file per run under ``bench/results/``."""

from __future__ import annotations

import json
import os
import platform
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def save(kind: str, result: dict[str, Any], directory: Path = RESULTS) -> Path:
    """Write `result` to `<directory>/<kind>-<UTC timestamp>.json` and return the path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{kind}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return path


def finish(
    kind: str,
    results: dict[str, Any],
    directory: Path,
    started: float,
    load_before: tuple[float, float, float],
) -> Path:
    """Stamp `results` with the run's duration (since `started`, a perf_counter) and the
    machine it ran on (CPUs, load average before and after, Python), then `save` them."""
    results.update(
        elapsed_s=round(time.perf_counter() - started, 1),
        machine={
            "cpu_count": os.cpu_count(),
            "loadavg_before": load_before,
            "loadavg_after": os.getloadavg(),
            "python": platform.python_version(),
        },
    )
    return save(kind, results, directory)
