"""streams/memory.py: memory sizes as deployments write them, and the resident-memory watch."""

from __future__ import annotations

import subprocess
from pathlib import Path
import sys

import pytest

from streams.memory import MemoryWatch, format_bytes, parse_memory, rss_bytes

MiB, GiB = 2**20, 2**30


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1Gi", GiB),
        ("512Mi", 512 * MiB),
        ("1.5Gi", 3 * GiB // 2),
        ("100Ki", 100 * 1024),
        ("2Ti", 2 * 2**40),
        ("1G", 10**9),
        ("250M", 250 * 10**6),
        ("100K", 100_000),
        ("3T", 3 * 10**12),
        ("1048576", MiB),
        (" 64Mi ", 64 * MiB),
    ],
)
def test_sizes_parse_to_bytes(text: str, size: int) -> None:
    assert parse_memory(text) == size


@pytest.mark.parametrize("text", ["", "Gi", "1gi", "1GB", "1 Gi", "-1Gi", "1.Gi", "1e9", "lots"])
def test_what_is_not_a_size_is_refused_with_the_forms_to_use(text: str) -> None:
    with pytest.raises(ValueError, match=r"not a size.*'512Mi'"):
        parse_memory(text)


@pytest.mark.parametrize("text", ["0", "0Mi", "0.1"])
def test_a_size_under_one_byte_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="less than one byte"):
        parse_memory(text)


@pytest.mark.parametrize(
    ("size", "shown"),
    [
        (GiB, "1 GiB"),
        (1395864371, "1.3 GiB"),
        (400 * MiB, "400 MiB"),
        (1536, "1.5 KiB"),
        (512, "512 bytes"),
    ],
)
def test_sizes_show_in_binary_units(size: int, shown: str) -> None:
    assert format_bytes(size) == shown


def test_no_limit_is_never_over() -> None:
    assert MemoryWatch(None, rss=lambda: 100 * GiB).over() is None


def test_under_or_at_the_limit_is_fine() -> None:
    assert MemoryWatch(GiB, rss=lambda: 300 * MiB).over() is None
    assert MemoryWatch(GiB, rss=lambda: GiB).over() is None


def test_over_the_limit_says_both_sizes_and_how_to_fix_it() -> None:
    reason = MemoryWatch(GiB, rss=lambda: 1395864371).over()
    assert reason is not None
    assert reason.startswith("memory limit exceeded")
    assert "uses 1.3 GiB resident" in reason and "its limit is 1 GiB" in reason
    assert "DeploymentConfigBuilder().memory(" in reason


def test_just_over_the_limit_shows_the_difference() -> None:
    reason = MemoryWatch(400 * MiB, rss=lambda: 400 * MiB + 1).over()
    assert reason is not None
    assert f"uses {400 * MiB + 1} bytes" in reason and f"limit is {400 * MiB} bytes" in reason


def test_the_watch_reads_memory_each_time() -> None:
    used = iter([100 * MiB, 600 * MiB, 100 * MiB])
    watch = MemoryWatch(512 * MiB, rss=lambda: next(used))
    assert [watch.over() is None for _ in range(3)] == [True, False, True]


def _grown_bytes(between: str, then: str = "") -> int:
    """How much `rss_bytes()` grew across `between` (Python lines; `then` runs after the
    measurement, to clean up), measured in a fresh
    interpreter: this test process may have brokers as children whose memory shrinks
    meanwhile (a JVM's collector: 35 MiB once in a full run), which would hide the growth."""
    measure = (
        f"from streams.memory import rss_bytes\nbefore = rss_bytes()\n{between}\n"
        f"print(rss_bytes() - before, flush=True)\n{then}\n"
    )
    grown = subprocess.run(
        [sys.executable, "-c", measure],
        cwd=Path(__file__).parents[2],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return int(grown.stdout.split()[-1])


def test_resident_size_follows_what_this_process_touches() -> None:
    assert 16 * MiB < rss_bytes() < 16 * GiB
    touched = "import numpy as np\nblock = np.ones(64 * 2**20, dtype=np.uint8)  # written"
    assert _grown_bytes(touched) > 48 * MiB


def test_a_child_process_counts_toward_the_workers_memory() -> None:
    child = (
        "import subprocess, sys\n"
        "child = subprocess.Popen([sys.executable, '-c', \"block = b'x' * (160 * 2**20)\\n"
        "print('ready', flush=True)\\nimport time; time.sleep(60)\"], stdout=subprocess.PIPE)\n"
        "assert child.stdout.readline() == b'ready\\n'"
    )
    assert (
        _grown_bytes(child, then="child.kill()") > 150 * MiB
    )  # what a Python step's own process holds
