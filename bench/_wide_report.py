"""bench_wide's summary: the table of rows/s against raw onnxruntime and the issue's targets,
then where the 1-step pipeline's time goes."""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.table import Table

console = Console(width=None if sys.stdout.isatty() else 160)
TARGETS = {"one_step": 0.5, "three_step": 0.8}
"""rows/s answered over raw onnxruntime's (issue #20)."""


def show(results: dict[str, Any]) -> None:
    raw = results["raw_onnxruntime"]
    table = Table(title=f"wide rows (512 features, 256-row messages) on {results['broker']}")
    for column in (
        "path",
        "rows/s",
        "x raw ORT",
        "in process, x raw",
        "target",
        "met",
        "offered msgs/s",
        "sent msgs/s",
        "lost",
        "failed",
        "p50 ms",
    ):
        table.add_column(column, justify="left" if column == "path" else "right")
    table.add_row("raw onnxruntime, 1 thread", f"{raw['rows_per_s']:,.0f}", "1.00", *[""] * 8)
    for kind, label in (
        ("one_step", "1 step, 512 features in"),
        ("three_step", "3 steps, 10 features in"),
    ):
        r, ratio = results[kind], results["ratios"][kind]
        table.add_row(
            label,
            f"{r['rows_per_s']:,.0f}",
            f"{ratio:.2f}",
            f"{results['in_process'][kind]['x_raw']:.2f}",
            f">= {TARGETS[kind]}",
            "yes" if ratio >= TARGETS[kind] else "no",
            f"{r['offered_msgs_per_s']:.0f}",
            f"{r['sent_per_s']:.0f}",
            str(r["lost"]),
            str(r["failed"]),
            str(r.get("p50_ms", "")),
        )
    console.print(table)
    console.print(
        f"raw onnxruntime before/after: {raw['before']['rows_per_s']:,.0f} / "
        f"{raw['after']['rows_per_s']:,.0f} rows/s"
    )
    for kind in ("one_step", "three_step", "one_step_sampled"):
        if kind in results:
            console.print(
                f"CPU ms per message, {kind}: {results[kind]['cpu_ms_per_msg']}; "
                f"ceilings {results[kind].get('ceilings', '')}"
            )
    parts = results["parts"]
    console.print(
        f"bytes: request {parts['request_bytes']:,}, answer {parts['answer_bytes']:,} "
        f"(without the carried in.* inputs {parts['answer_bytes_without_inputs']:,})"
    )
    console.print(f"in process, ms per message: {parts['ms_per_message']}")
    console.print(
        "the stage path in process (no Kafka), ms per message: "
        + ", ".join(f"{kind} {r['ms_per_msg']}" for kind, r in results["in_process"].items())
    )
    console.print(f"log agent, ms per message: {parts['log_agent']}")
    for label, figures in results["kafka_client"].items():
        console.print(
            f"aiokafka, one {label}-sized record ({figures['bytes']:,} bytes), us of "
            f"CPU: send {figures['send']}, fetch {figures['fetch']}"
        )
    if "one_step_cprofile" in results:
        console.print("the worker under cProfile, ms per message (own, with callees):")
        for function, own, cumulative in results["one_step_cprofile"].get(
            "worker_cprofile_ms_per_msg", []
        ):
            console.print(f"  {own:8.3f} {cumulative:8.3f}  {function}", markup=False)
    if "one_step_sampled" in results:
        console.print("the worker's main thread, sampled, ms per message (task, package):")
        for task, package, ms in results["one_step_sampled"].get("worker_sampled_ms_per_msg", []):
            console.print(f"  {ms:8.3f}  {task}  ({package})", markup=False)
