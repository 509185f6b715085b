"""control/log_queries.py: a page of logs has the columns its rows have."""

from __future__ import annotations

import pyarrow as pa

from control.log_queries import present_columns


def test_columns_null_in_every_row_and_metadata_row_go() -> None:
    page = pa.table(
        {
            "time": [1, 2],
            "in.tensor": [None, None],
            "in.f0": [0.5, 0.7],
            "out.error": pa.array([None, "boom"]),
            "metadata.row": [0, 1],
            "row": [0, 1],
        }
    )
    assert present_columns(page).column_names == ["time", "in.f0", "out.error", "row"]


def test_an_empty_page_keeps_every_column() -> None:
    page = pa.table({"time": pa.array([], pa.int64()), "in.tensor": pa.array([], pa.float64())})
    assert present_columns(page).column_names == ["time", "in.tensor"]
