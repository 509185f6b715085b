"""control/_cli_output.py: cells, tables and row lines as the `weir` command prints them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from rich.console import Console

from control import _cli_output as output


@pytest.mark.parametrize(
    ("value", "column", "wide", "shown"),
    [
        (None, "x", False, ""),
        ("0123456789abcdef", "version", False, "01234567"),
        ("0123456789abcdef", "version", True, "0123456789abcdef"),
        (
            "a-very-long-pipeline-name-that-stays",
            "name",
            False,
            "a-very-long-pipeline-name-that-stays",
        ),
        (["v1-aaaaaaaaaa", "v2", "v3", "v4"], "versions", False, "v1-aaaaa, v2, v3, … +1"),
        (["pre", "model"], "steps", False, "pre, model"),
        ([0.123456789, 2.0, 3.0, 4.0], "in.tensor", False, "[0.123457, 2, 3, … +1]"),
        ([0.123456789], "out.variable", True, "[0.123456789]"),
        ("2026-12-03T00:45:53.952321Z", "created", False, "2026-12-03 00:45:53Z"),
        (
            datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC),
            "time",
            True,
            "2026-01-02 03:04:05.678Z",
        ),
    ],
)
def test_cells(value: object, column: str, wide: bool, shown: str) -> None:
    assert output.cell(value, column, wide=wide) == shown


def test_a_table_fits_80_columns_and_keeps_names_whole(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(output, "out", Console(width=80, highlight=False))
    names = ["diabetes", "diabetes2", "diabetes3-with-a-rather-long-name"]
    rows = [
        {
            "name": n,
            "deployed": False,
            "steps": ["[pre]", "model"],
            "versions": ["0123456789abcdef" * 2] * 5,
            "last_updated": "2026-12-03T00:45:53Z",
        }
        for n in names
    ]
    output.table(rows, ["name", "deployed", "steps", "versions", "last_updated"])
    printed = capsys.readouterr().out.splitlines()
    assert all(len(line) <= 80 for line in printed)
    assert printed[0].split()[0] == "name"
    assert [line.split()[0] for line in printed[1:] if not line.startswith(" ")] == names
    assert "[pre]," in printed[1]  # cells are text, not rich markup


def test_row_columns_and_lines() -> None:
    names = [
        "time",
        "in.tensor",
        "out.variable",
        "out._model_split",
        "check_failures",
        "metadata.model",
        "request_id",
        "row",
    ]
    assert output.row_columns(names, wide=False) == [
        "time",
        "request_id",
        "row",
        "out.variable",
        "check_failures",
    ]
    assert output.row_columns(names, wide=True) == names
    line = output.row_line(
        {"request_id": "abcdef0123", "out.variable": [1.5] * 100}, ["request_id", "out.variable"]
    )
    assert line.startswith("abcdef01  out.variable=[1.5, 1.5, 1.5, … +97]")
