"""Where benchmarks save their figures: one JSON file per run under ``bench/results/``."""

from __future__ import annotations

import json
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
