"""bench_images' summary: each transport's rows/s against the in-process rows/s, and the table
it prints."""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.table import Table

console = Console(width=None if sys.stdout.isatty() else 160)


def ratios(results: dict[str, Any]) -> dict[str, Any]:
    """Each transport's rows/s over the in-process rows/s, per images per request."""
    return {
        way: {
            n: round(results[way][n]["rows_per_s"] / results["in_process"][n]["rows_per_s"], 3)
            for n in results[way]
        }
        for way in ("http", "kafka")
    }


def show(results: dict[str, Any]) -> None:
    table = Table(
        title=f"image pipeline on {results['broker']} "
        f"(PNG ~{results['png_bytes_mean'] / 1e3:.0f} KB)"
    )
    for column in ("path", "images/request", "rows/s", "x in process", "p50 ms", "p99 ms"):
        table.add_column(column)
    for way in ("in_process", "http", "kafka"):
        for n, figures in results[way].items():
            ratio = results["ratios"].get(way, {}).get(n, 1.0)
            table.add_row(
                way,
                n,
                f"{figures['rows_per_s']:.1f}",
                f"{ratio:.2f}",
                str(figures["p50_ms"]),
                str(figures["p99_ms"]),
            )
    console.print(table)
    for way in ("in_process", "http", "kafka"):
        for n, figures in results[way].items():
            console.print(f"CPU ms per image, {way} {n}/request: {figures['cpu_ms_per_row']}")
    console.print(
        "a step in its own process, per batch, wall ms / CPU ms: "
        + "; ".join(
            f"{k} ({v['mb']} MB): +{v['own_process_adds_ms']} / +{v['own_process_adds_cpu_ms']}"
            for k, v in results["boundary"].items()
        )
    )
    console.print(
        "log store bytes per image: "
        + "; ".join(f"{k}: {v['bytes_per_image']}" for k, v in results["logs"].items())
    )
    console.print(f"deploy times (s): {results['deploy_s']}")
