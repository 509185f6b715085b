"""Tables for the SDK's reprs: plain text for terminals, HTML for notebooks."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any


def _cell(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    return "" if value is None else str(value)


def text_table(rows: Sequence[dict[str, Any]], *, vertical: bool = False) -> str:
    if not rows:
        return "(none)"
    if vertical:
        width = max(len(k) for k in rows[0])
        return "\n\n".join(
            "\n".join(f"{k.ljust(width)}  {_cell(v)}" for k, v in row.items()) for row in rows
        )
    columns = list(rows[0])
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in cells]
    return "\n".join(lines)


def html_table(rows: Sequence[dict[str, Any]], *, vertical: bool = False) -> str:
    def esc(value: Any) -> str:
        return html.escape(_cell(value))

    if not rows:
        return "<p>(none)</p>"
    if vertical:
        return "".join(
            "<table>"
            + "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in row.items())
            + "</table>"
            for row in rows
        )
    columns = list(rows[0])
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{esc(row.get(c))}</td>" for c in columns) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


class Listing(list):  # type: ignore[type-arg]
    """A list of SDK objects that displays as one table (`list_pipelines()`, `list_models()`)."""

    def __init__(self, items: Sequence[Any], row: Any) -> None:
        super().__init__(items)
        self._row = row

    def __repr__(self) -> str:
        return text_table([self._row(item) for item in self])

    def _repr_html_(self) -> str:
        return html_table([self._row(item) for item in self])
