"""What the `weir` command prints: tables that fit the terminal, rows as lines, and JSON.

Tables keep names whole (a name is what a user types next) and shorten the rest: ids to
their first 8 characters, tensors to their first values. `--wide` shows every field in
full; `--json` prints everything for machines.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import pyarrow as pa
from rich.console import Console
from rich.table import Table
from rich.text import Text

from engine.columns import (
    CHECK_FAILURES,
    OUT_MODEL_SPLIT,
    OUT_PREFIX,
    REQUEST_ID,
    ROW,
    SHADOW_OUT_PREFIX,
    TIME,
)

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

ID_WIDTH = 8
VALUES_SHOWN = 3
"""A tensor cell shows its first few values, then an ellipsis."""
NAME_COLUMNS = frozenset({"name", "pipeline", "model"})
ID_COLUMNS = frozenset({"version", "versions", "sha", REQUEST_ID, "deployed_version"})
LIST_COLUMNS = ID_COLUMNS | {"steps", "tags"}
"""Lists shown as `a, b`; tensors are shown as `[1.5, 2.5]`."""
TIME_COLUMNS = frozenset({TIME, "created", "last_updated", "creation_time", "last_updated_time"})
ROW_COLUMNS = (TIME, REQUEST_ID, ROW)
"""Besides the outputs and check failures, what a row table shows without --wide."""


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def cell(value: Any, column: str = "", *, wide: bool = False) -> str:
    """One value as a table shows it."""
    if value is None:
        return ""
    if isinstance(value, str) and column in TIME_COLUMNS:  # ISO text from the server's JSON
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return str(value)
    if isinstance(value, datetime):
        return value.isoformat(" ", "milliseconds" if wide else "seconds").replace("+00:00", "Z")
    if isinstance(value, float):
        return repr(value) if wide else f"{value:.6g}"
    if isinstance(value, (list, tuple)):
        items = [cell(v, column, wide=wide) for v in value]
        if not wide and len(items) > VALUES_SHOWN:
            items = [*items[:VALUES_SHOWN], f"… +{len(items) - VALUES_SHOWN}"]
        return ", ".join(items) if column in LIST_COLUMNS else "[" + ", ".join(items) + "]"
    text = str(value)
    if column in ID_COLUMNS and not wide and len(text) > ID_WIDTH:
        return text[:ID_WIDTH]
    return text


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str], *, wide: bool = False) -> None:
    """`rows` as a table of `columns`; names never cut, other cells folded to fit."""
    grid = Table(*columns, box=None, pad_edge=False, header_style="bold")
    for name, column in zip(columns, grid.columns):
        if name in NAME_COLUMNS:
            column.no_wrap = True
            column.min_width = max([len(str(r.get(name) or "")) for r in rows] + [len(name)])
        else:
            column.overflow = "fold"
            column.min_width = len(name)  # headers stay whole too
    for row in rows:
        grid.add_row(*(Text(cell(row.get(c), c, wide=wide)) for c in columns))
    (Console(width=max(out.width, 400), highlight=False) if wide else out).print(grid)


def row_columns(names: Sequence[str], *, wide: bool) -> list[str]:
    """The columns of result or log rows a table shows: all with --wide; else the row's
    time and id, the model outputs and the check failures."""
    if wide:
        return list(names)
    shown = [n for n in ROW_COLUMNS if n in names]
    shown += [
        n for n in names if n.startswith((OUT_PREFIX, SHADOW_OUT_PREFIX)) and n != OUT_MODEL_SPLIT
    ]
    return shown + [n for n in (CHECK_FAILURES,) if n in names]


def rows_table(batch: pa.Table | pa.RecordBatch, *, wide: bool = False) -> None:
    if batch.num_rows == 0:
        err.print("(no rows)")
        return
    table(batch.to_pylist(), row_columns(batch.schema.names, wide=wide), wide=wide)


def row_line(row: dict[str, Any], columns: Sequence[str]) -> str:
    """One row on one line (`weir tail`), cut to the terminal's width."""
    line = "  ".join(
        f"{c}={cell(row.get(c), c)}" if c not in ROW_COLUMNS else cell(row.get(c), c)
        for c in columns
    )
    return line if len(line) <= out.width else line[: out.width - 1] + "…"
