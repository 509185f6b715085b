"""streams/gc_tuning.py, in a process of its own (it changes the interpreter's collector)."""

from __future__ import annotations

import json
import subprocess
import sys

CHECK = """
import gc, json
from streams.gc_tuning import tune_gc
loaded = len(gc.get_objects())
tune_gc()
print(json.dumps({"threshold": gc.get_threshold(), "frozen": gc.get_freeze_count(),
                  "loaded": loaded}))
"""


def test_start_up_objects_are_frozen_and_young_collections_are_rarer() -> None:
    out = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, check=True)
    found = json.loads(out.stdout)
    assert found["threshold"] == [20_000, 50, 50]
    assert found["frozen"] >= found["loaded"] // 2  # what start-up left is out of collections
