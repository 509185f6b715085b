"""bench_peers' summary: each figure's min/median/max per system over the repetitions, the
weir/MLServer ratio per repetition, and the issue's targets."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.table import Table

Run = dict[str, Any]

TARGETS = {
    "kafka_1_msgs_ratio_min": 3.0,
    "kafka_256_rows_ratio_min": 3.0,
    "weir_kafka_lost_max": 0,
    "http_1_sequential_p50_ratio_max": 2.0,
    "weir_http_500_p50_ms_max": 5.0,
    "weir_http_500_p99_ms_max": 20.0,
    "weir_http_1000_failed_max": 0,
}


def _get(run: Run, *path: str) -> float | None:
    value: Any = run
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return float(value) if value is not None else None


def _lost(run: Run) -> float | None:
    parts = [
        p
        for p in (
            _get(run, "kafka_1", "lost"),
            _get(run, "kafka_256", "lost"),
            _get(run, "kafka_latency_1", "lost"),
        )
        if p is not None
    ]
    return sum(parts) if parts else None


def _cpu(path: tuple[str, ...]) -> Callable[[Run], float | None]:
    """CPU ms per request of the system's own processes (not the broker's or client's)."""

    def read(run: Run) -> float | None:
        cpu = run
        for key in path:
            cpu = cpu.get(key, {}) if isinstance(cpu, dict) else {}
        own = [v for k, v in cpu.get("cpu_ms_per_request", {}).items() if k in ("server", "worker")]
        return sum(own) if own else None

    return read


# (label, how to read it from one run, the ratio's target: (">=" | "<=", value) or None,
#  weir's own target, and which way is better)
METRICS: list[
    tuple[str, Callable[[Run], float | None], tuple[str, float] | None, tuple[str, float] | None]
] = [
    ("Kafka 1-row msgs/s", lambda r: _get(r, "kafka_1", "msgs_per_s"), (">=", 3.0), None),
    ("Kafka 256-row rows/s", lambda r: _get(r, "kafka_256", "rows_per_s"), (">=", 3.0), None),
    ("Kafka lost replies (all runs)", _lost, None, ("<=", 0)),
    (
        "Kafka failed replies",
        lambda r: (
            None
            if "kafka_1" not in r
            else (_get(r, "kafka_1", "failed") or 0) + (_get(r, "kafka_256", "failed") or 0)
        ),
        None,
        ("<=", 0),
    ),
    ("Kafka 1-row p50 ms (50/s)", lambda r: _get(r, "kafka_latency_1", "p50_ms"), None, None),
    ("Kafka 1-row p99 ms (50/s)", lambda r: _get(r, "kafka_latency_1", "p99_ms"), None, None),
    (
        "HTTP 1-row sequential p50 ms",
        lambda r: _get(r, "http", "sequential_1", "p50_ms"),
        ("<=", 2.0),
        None,
    ),
    (
        "HTTP 1-row sequential p99 ms",
        lambda r: _get(r, "http", "sequential_1", "p99_ms"),
        None,
        None,
    ),
    (
        "HTTP 1-row sequential req/s",
        lambda r: _get(r, "http", "sequential_1", "ok_per_s"),
        None,
        None,
    ),
    ("HTTP 1-row sequential, server CPU ms/req", _cpu(("http", "sequential_1")), None, None),
    (
        "HTTP 256-row sequential rows/s",
        lambda r: _get(r, "http", "sequential_256", "rows_per_s"),
        None,
        None,
    ),
    (
        "HTTP 1-row 500/s: answered/s",
        lambda r: _get(r, "http", "open_1_at_500", "ok_per_s"),
        None,
        None,
    ),
    (
        "HTTP 1-row 500/s: p50 ms",
        lambda r: _get(r, "http", "open_1_at_500", "p50_ms"),
        None,
        ("<=", 5.0),
    ),
    (
        "HTTP 1-row 500/s: p99 ms",
        lambda r: _get(r, "http", "open_1_at_500", "p99_ms"),
        None,
        ("<=", 20.0),
    ),
    (
        "HTTP 1-row 500/s: refused (503)",
        lambda r: _get(r, "http", "open_1_at_500", "refused_503"),
        None,
        None,
    ),
    (
        "HTTP 1-row 500/s: failed/timed out",
        lambda r: _get(r, "http", "open_1_at_500", "failed"),
        None,
        None,
    ),
    (
        "HTTP 256-row 500/s: answered/s",
        lambda r: _get(r, "http", "open_256_at_500", "ok_per_s"),
        None,
        None,
    ),
    (
        "HTTP 256-row 500/s: failed/timed out",
        lambda r: _get(r, "http", "open_256_at_500", "failed"),
        None,
        None,
    ),
    (
        "weir HTTP 1-row 1000/s: answered/s",
        lambda r: _get(r, "http", "open_1_at_1000", "ok_per_s"),
        None,
        None,
    ),
    (
        "weir HTTP 1-row 1000/s: refused (503)",
        lambda r: _get(r, "http", "open_1_at_1000", "refused_503"),
        None,
        None,
    ),
    (
        "weir HTTP 1-row 1000/s: failed/timed out",
        lambda r: _get(r, "http", "open_1_at_1000", "failed"),
        None,
        ("<=", 0),
    ),
    (
        "weir HTTP 1-row 1000/s: p99 ms (answered)",
        lambda r: _get(r, "http", "open_1_at_1000", "p99_ms"),
        None,
        None,
    ),
    (
        "weir HTTP 1-row 1000/s: max ms (refused)",
        lambda r: _get(r, "http", "open_1_at_1000", "refused_max_ms"),
        None,
        None,
    ),
    (
        "machine load during the run (1-min average, max)",
        lambda r: max(r["load_average_1m"]) if "load_average_1m" in r else None,
        None,
        None,
    ),
]


def _spread(values: list[float]) -> list[float] | None:
    return (
        [round(min(values), 3), round(statistics.median(values), 3), round(max(values), 3)]
        if values
        else None
    )


def _met(value: float | None, target: tuple[str, float] | None) -> bool | None:
    if value is None or target is None:
        return None
    op, bound = target
    return value >= bound if op == ">=" else value <= bound


def _at_top_rate(label: str) -> Callable[[Run], bool]:
    """Whether one run's Kafka ladder behind `label` kept up with its last rate: the figure
    is then the ladder's, not the system's, and a ratio with it a bound."""
    ladder = {"Kafka 1-row msgs/s": "kafka_1", "Kafka 256-row rows/s": "kafka_256"}.get(label)
    return lambda run: bool(ladder and run.get(ladder, {}).get("at_top_rate"))


def ratios(runs: dict[str, list[Run]]) -> dict[str, Any]:
    """Each metric: both systems' min/median/max, the per-repetition ratio's, and targets
    (judged on the median)."""
    summary: dict[str, Any] = {}
    for label, read, ratio_target, own_target in METRICS:
        values = {name: [v for v in map(read, runs[name]) if v is not None] for name in runs}
        pairs = [
            (w, m)
            for w, m in zip(map(read, runs["weir"]), map(read, runs["mlserver"]))
            if w is not None and m
        ]
        ratio = _spread([w / m for w, m in pairs])
        weir = _spread(values["weir"])
        floors = {name: sum(map(_at_top_rate(label), runs[name])) for name in runs}
        summary[label] = {
            "mlserver": _spread(values["mlserver"]),
            "weir": weir,
            "ratio": ratio,
            "ratio_target": ratio_target,
            "weir_target": own_target,
            "floors": {name: n for name, n in floors.items() if n},
            "met": _met(ratio[1] if ratio else None, ratio_target)
            if ratio_target
            else _met(weir[1] if weir else None, own_target),
        }
    return summary


def show(console: Console, broker: str, summary: dict[str, Any], answers: dict[str, Any]) -> None:
    """The table of figures and ratios."""

    def cell(spread: list[float] | None) -> str:
        if spread is None:
            return "-"
        lo, mid, hi = spread
        return f"{mid:g} ({lo:g}-{hi:g})" if lo != hi else f"{mid:g}"

    table = Table(title=f"weir vs MLServer on {broker} (median, min-max over repetitions)")
    for column in ("figure", "MLServer", "weir", "weir/MLServer", "target", "met"):
        table.add_column(column)
    for label, row in summary.items():
        target = row["ratio_target"] or row["weir_target"]
        text = (
            ""
            if target is None
            else (
                f"ratio {target[0]} {target[1]:g}"
                if row["ratio_target"]
                else f"weir {target[0]} {target[1]:g}"
            )
        )
        met = {True: "yes", False: "NO", None: ""}[row["met"]]
        table.add_row(
            label, cell(row["mlserver"]), cell(row["weir"]), cell(row["ratio"]), text, met
        )
    console.print(table)
    for label, row in summary.items():
        for name, n in row.get("floors", {}).items():
            console.print(
                f"{label}: {name} kept up with the ladder's last rate in {n} repetition(s); "
                "its figure there is a floor"
            )
    console.print(
        f"same answers on {answers['rows']} rows: {answers['match']} "
        f"(max |weir - MLServer| {answers['max_abs_diff']} of up to "
        f"{answers['max_abs_answer']})"
    )
