"""bench_pipeline's figures turned into ratios, issue #20's targets (met or missed, by how
much), and the tables it prints."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.table import Table

TARGETS = {
    "heavy_1step_vs_raw_onnxruntime_min": 0.8,
    "heavy_3step_vs_raw_onnxruntime_min": 0.85,
    "heavy_3step_vs_1step_ratio_min": 0.95,
    "cheap_vs_bare_aiokafka_min": 0.5,
    "extra_fused_step_p50_beyond_compute_ms_max": 0.3,
}
console = Console(width=None if sys.stdout.isatty() else 160)


def _find(
    configs: list[dict[str, Any]], model: str, steps: int, rows: int, sidekick: bool = False
) -> dict[str, Any] | None:
    return next(
        (
            c
            for c in configs
            if (c["model"], c["steps"], c["rows"], c["sidekick"]) == (model, steps, rows, sidekick)
        ),
        None,
    )


def _label(c: dict[str, Any]) -> str:
    return f"{c['model']} {c['steps']}-step {c['rows']}-row" + (
        " (sidekick middle step)" if c.get("sidekick") else ""
    )


def _diff(a: float | None, b: float | None, scale: float = 1.0) -> float | None:
    return None if a is None or b is None else round((a - b) / scale, 3)


def _check(target: str, config: str, value: float | None, key: str) -> dict[str, Any]:
    """A target's check: `value` against TARGETS[key] (a `_min` or `_max`); `margin` is how
    far it is on the right side (negative: missed by that much)."""
    threshold = TARGETS[key]
    margin = (
        None
        if value is None
        else round(value - threshold if key.endswith("_min") else threshold - value, 3)
    )
    return {
        "target": target,
        "config": config,
        "value": value,
        "threshold": threshold,
        "met": margin is not None and margin >= 0,
        "margin": margin,
    }


def _where_time_goes(c: dict[str, Any]) -> dict[str, Any]:
    """CPU per answered message during the throughput run, and the ceilings it allows."""
    msgs = c["throughput"]["answered_msgs"]
    cpu = c["throughput"]["cpu_s"]
    wall = cpu["wall_s"]
    workers_s = cpu["worker"] + cpu.get("sidekick", 0.0)
    workers_ms = workers_s / msgs * 1e3 if msgs else None
    stages_ms = c["stages_in_process"]["cpu_ms_per_msg"]
    ours_s = sum(
        v for k, v in cpu.items() if k not in ("wall_s", "machine") and not k.endswith("_wait")
    )
    model_ms = c["raw_onnxruntime"]["cpu_ms_per_batch"]
    return {
        # every worker of the pipeline: the main one, and the sidekick's where there is one
        "worker_cpu_ms_per_msg": round(workers_ms, 3) if workers_ms is not None else None,
        "sidekick_cpu_ms_per_msg": round(cpu.get("sidekick", 0.0) / msgs * 1e3, 3)
        if msgs
        else None,
        "model_ms_per_msg": model_ms,
        "stages_ms_per_msg": stages_ms,
        "kafka_loop_ms_per_msg": round(workers_ms - stages_ms, 3)
        if workers_ms is not None
        else None,
        "broker_cpu_ms_per_msg": round(cpu["broker"] / msgs * 1e3, 3) if msgs else None,
        "server_cpu_ms_per_msg": round(cpu["server"] / msgs * 1e3, 3) if msgs else None,
        "bench_cpu_ms_per_msg": round(cpu["bench"] / msgs * 1e3, 3) if msgs else None,
        "worker_cores_busy": round(workers_s / wall, 2),
        "worker_runqueue_wait_share": round(
            (cpu["worker_wait"] + cpu.get("sidekick_wait", 0.0)) / wall, 2
        ),
        "all_cores_busy": round(ours_s / wall, 2),
        "other_processes_cores_busy": round((cpu["machine"] - ours_s) / wall, 2),
        # The best x raw onnxruntime these CPU costs allow: the workers' if they had one core
        # to themselves, and the whole machine's if every core were busy with the workers,
        # broker, server and bench client.
        "ceiling_one_worker_core": round(model_ms / workers_ms, 3) if workers_ms else None,
        "ceiling_all_cores": (
            round(model_ms / (ours_s / msgs * 1e3 / (os.cpu_count() or 1)), 3) if msgs else None
        ),
    }


def _extra_step(e: dict[str, Any]) -> None:
    """What one extra fused step adds to p50 (paired), beyond its model's own compute (CPU),
    and what it costs the stage in process (CPU)."""
    own = sum(e["own_compute_ms"].values()) / len(e["own_compute_ms"])
    e["own_compute_per_step_ms"] = round(own, 4)
    e["extra_step_p50_ms"] = _diff(e["steps"]["p50_ms"], e["one_step"]["p50_ms"], 2)
    e["extra_step_beyond_compute_ms"] = _diff(e["extra_step_p50_ms"], own)
    e["in_process_per_step_ms"] = _diff(
        e["stages_steps"]["cpu_ms_per_msg"], e["stages_one_step"]["cpu_ms_per_msg"], 2
    )
    e["in_process_beyond_compute_ms"] = _diff(e["in_process_per_step_ms"], own)
    e["lone_in_process_per_step_ms"] = _diff(
        e["stages_steps_lone"]["cpu_ms_per_msg"], e["stages_one_step_lone"]["cpu_ms_per_msg"], 2
    )
    e["worker_cpu_per_step_ms"] = _diff(
        e["worker_cpu_ms_per_msg"]["steps"], e["worker_cpu_ms_per_msg"]["one_step"], 2
    )
    e["in_pipeline_p50_per_step_ms"] = _diff(
        e["steps"]["in_pipeline_p50_ms"], e["one_step"]["in_pipeline_p50_ms"], 2
    )


def derive(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Add the ratios and figures to `results`; return the target checks."""
    configs = results["configs"]
    for c in configs:
        weir = c["throughput"]["rows_per_s"]
        echo = c["echo"]["throughput"]["rows_per_s"]
        c["vs_raw_onnxruntime"] = round(weir / c["raw_onnxruntime"]["rows_per_s"], 3)
        c["vs_bare_aiokafka"] = round(weir / echo, 3) if echo else None
        c["where_time_goes"] = _where_time_goes(c)
    checks = []
    for c in configs:
        if c["model"] == "cheap" and c["steps"] == 1:  # a bare round trip is one hop
            checks.append(
                _check(
                    "cheap >= 0.5x bare aiokafka round trip",
                    _label(c),
                    c["vs_bare_aiokafka"],
                    "cheap_vs_bare_aiokafka_min",
                )
            )
    heavy1, heavy3 = _find(configs, "heavy", 1, 256), _find(configs, "heavy", 3, 256)
    if heavy1:
        checks.append(
            _check(
                "heavy 1-step >= 0.8x raw onnxruntime",
                _label(heavy1),
                heavy1["vs_raw_onnxruntime"],
                "heavy_1step_vs_raw_onnxruntime_min",
            )
        )
    if heavy3:
        checks.append(
            _check(
                "heavy 3-step >= 0.85x raw onnxruntime",
                _label(heavy3),
                heavy3["vs_raw_onnxruntime"],
                "heavy_3step_vs_raw_onnxruntime_min",
            )
        )
    if heavy1 and heavy3:
        checks.append(
            _check(
                "heavy 3-step ratio >= 0.95x the heavy 1-step ratio",
                "256-row",
                round(heavy3["vs_raw_onnxruntime"] / heavy1["vs_raw_onnxruntime"], 3),
                "heavy_3step_vs_1step_ratio_min",
            )
        )
    for e in results.get("extra_steps", []):
        _extra_step(e)
        checks.append(
            _check(
                "each extra fused step <= 0.3 ms p50 beyond its model's compute",
                f"{e['model']} {e['rows']}-row",
                e["extra_step_beyond_compute_ms"],
                "extra_fused_step_p50_beyond_compute_ms_max",
            )
        )
    boundary = results.get("sidekick_boundary")
    sidekick = _find(configs, "heavy", 3, 256, sidekick=True)
    if boundary:
        boundary["added_p50_ms"] = _diff(
            boundary["sidekick"]["p50_ms"], boundary["fused"]["p50_ms"]
        )
    if boundary and sidekick and heavy3:
        boundary["throughput_vs_fused"] = round(
            sidekick["throughput"]["rows_per_s"] / heavy3["throughput"]["rows_per_s"], 3
        )
        # measured on different stacks minutes apart: each against its own raw onnxruntime
        boundary["vs_raw_vs_fused"] = round(
            sidekick["vs_raw_onnxruntime"] / heavy3["vs_raw_onnxruntime"], 3
        )
    return checks


def _n(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def _drift(baseline: dict[str, Any], figure: Callable[[dict[str, Any]], float]) -> float | None:
    """A bracketing baseline's figure after its pipeline over before (how much the machine moved)."""
    before = figure(baseline["before"])
    return figure(baseline["after"]) / before if before else None


def _table(title: str, columns: tuple[str, ...], rows: list[list[str]]) -> None:
    table = Table(title=title)
    for col in columns:
        table.add_column(col, justify="right")
    for row in rows:
        table.add_row(*row)
    console.print(table)


def show(results: dict[str, Any], checks: list[dict[str, Any]]) -> None:
    """Print the figures and the targets."""
    configs = results["configs"]
    reader = configs[0]["reader"] if configs else {}
    _table(
        f"throughput on {results['broker']} (fetch wait {reader.get('fetch_wait_ms')} ms, "
        f"ORT threads {results['ort_threads']}, {os.cpu_count()} CPUs)",
        (
            "config",
            "weir rows/s",
            "raw ORT rows/s",
            "×raw ORT",
            "echo rows/s",
            "×echo",
            "unanswered",
            "raw after/before",
            "echo after/before",
        ),
        [
            [
                _label(c),
                _n(c["throughput"]["rows_per_s"], 0),
                _n(c["raw_onnxruntime"]["rows_per_s"], 0),
                _n(c["vs_raw_onnxruntime"], 3),
                _n(c["echo"]["throughput"]["rows_per_s"], 0),
                _n(c["vs_bare_aiokafka"], 3),
                str(c["throughput"]["unanswered_msgs"] + c["throughput"]["error_msgs"]),
                _n(_drift(c["raw_onnxruntime"], lambda r: r["rows_per_s"]), 2),
                _n(_drift(c["echo"], lambda e: e["throughput"]["rows_per_s"]), 2),
            ]
            for c in configs
        ],
    )
    _table(
        "latency (ms), and where the time goes (CPU ms per message during throughput; "
        "stages and model: CPU in process)",
        (
            "config",
            "p50",
            "p99",
            "in-pipe p50",
            "echo p50",
            "workers CPU",
            "sidekick CPU",
            "stages",
            "model",
            "kafka+loop",
            "broker",
            "server",
            "client",
            "worker runq",
            "others' cores",
            "ceiling 1 core",
            "ceiling all",
        ),
        [
            [
                _label(c),
                _n(c["latency"]["p50_ms"], 2),
                _n(c["latency"]["p99_ms"], 2),
                _n(c["latency"]["in_pipeline_p50_ms"], 2),
                _n(c["echo"]["latency"]["p50_ms"], 2),
                *(
                    _n(w[k], 3)
                    for k in (
                        "worker_cpu_ms_per_msg",
                        "sidekick_cpu_ms_per_msg",
                        "stages_ms_per_msg",
                        "model_ms_per_msg",
                        "kafka_loop_ms_per_msg",
                        "broker_cpu_ms_per_msg",
                        "server_cpu_ms_per_msg",
                        "bench_cpu_ms_per_msg",
                    )
                ),
                *(
                    _n(w[k], 2)
                    for k in (
                        "worker_runqueue_wait_share",
                        "other_processes_cores_busy",
                        "ceiling_one_worker_core",
                        "ceiling_all_cores",
                    )
                ),
            ]
            for c in configs
            for w in [c["where_time_goes"]]
        ],
    )
    _table(
        "extra fused steps (ms; the 3-step chain and its last model alone, paired)",
        (
            "model",
            "rows",
            "1-step p50",
            "3-step p50",
            "+p50/step",
            "own compute/step",
            "beyond compute",
            "in-pipe +p50/step",
            "in process/step",
            "in process beyond compute",
            "lone msgs in process/step",
            "worker CPU/step (paired run)",
        ),
        [
            [
                e["model"],
                str(e["rows"]),
                _n(e["one_step"]["p50_ms"], 2),
                _n(e["steps"]["p50_ms"], 2),
                _n(e["extra_step_p50_ms"], 3),
                _n(e["own_compute_per_step_ms"], 4),
                _n(e["extra_step_beyond_compute_ms"], 3),
                _n(e["in_pipeline_p50_per_step_ms"], 3),
                _n(e["in_process_per_step_ms"], 4),
                _n(e["in_process_beyond_compute_ms"], 4),
                _n(e["lone_in_process_per_step_ms"], 4),
                _n(e["worker_cpu_per_step_ms"], 3),
            ]
            for e in results.get("extra_steps", [])
        ],
    )
    boundary = results.get("sidekick_boundary")
    if boundary:
        console.print(
            f"sidekick boundary (heavy 3-step 256-row, {boundary['sidekick_step']} as a sidekick): "
            f"p50 {_n(boundary['sidekick']['p50_ms'], 2)} against "
            f"{_n(boundary['fused']['p50_ms'], 2)} ms fused, paired "
            f"(+{_n(boundary['added_p50_ms'], 2)} ms); throughput "
            f"{_n(boundary.get('throughput_vs_fused'), 3)}x the fused chain's rows/s "
            f"({_n(boundary.get('vs_raw_vs_fused'), 3)}x its ratio to raw onnxruntime)"
        )
    table = Table(title="targets (issue #20)")
    for col in ("target", "config", "value", "threshold", "margin", "met"):
        table.add_column(col)
    for t in checks:
        table.add_row(
            t["target"],
            t["config"],
            _n(t["value"], 3),
            str(t["threshold"]),
            _n(t["margin"], 3),
            "[green]met[/green]" if t["met"] else "[red]missed[/red]",
        )
    console.print(table)
    console.print(
        f"broker RSS after each pipeline (MB): {results['broker_rss_mb']}; "
        f"deploy times (s): {results['deploy_s']}"
    )
