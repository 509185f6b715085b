"""control/sdk/tail.py: follow_logs yields each log row logged after it started, once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa

from control.sdk.tail import follow_logs

T0 = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


class Store:
    """Log rows as `Pipeline.logs(start, end)` returns them: newest first, in [start, end)."""

    def __init__(self) -> None:
        self.rows: list[dict[str, object]] = []

    def log(self, request_id: str, seconds: float, rows: int = 1) -> None:
        self.rows += [
            {"time": T0 + timedelta(seconds=seconds), "request_id": request_id, "row": r}
            for r in range(rows)
        ]

    def read(self, start: datetime, end: datetime) -> pa.Table:
        found = sorted(
            (r for r in self.rows if start <= r["time"] < end),  # type: ignore[operator]
            key=lambda r: r["time"],
            reverse=True,
        )  # type: ignore[arg-type,return-value]
        return pa.Table.from_pylist(
            found,
            schema=pa.schema(
                [
                    ("time", pa.timestamp("ms", tz="UTC")),
                    ("request_id", pa.string()),
                    ("row", pa.int32()),
                ]
            ),
        )


def test_rows_logged_after_it_started_come_once_oldest_first() -> None:
    store, started = Store(), []
    store.log("before", 0)
    later = [
        lambda: (store.log("b", 5, rows=2), store.log("a", 3)),  # a: answered after b
        lambda: store.log("c", 6),
        lambda: None,
    ]

    def read(start: datetime, end: datetime) -> pa.Table:
        table = store.read(start, end)
        later.pop(0)()  # what is logged between this poll and the next
        return table

    follow = follow_logs(
        read, ready=lambda: started.append(True), poll_s=0, now=lambda: T0 + timedelta(seconds=10)
    )
    first = next(follow)
    assert started == [True]
    assert list(zip(first["request_id"].to_pylist(), first["row"].to_pylist())) == [
        ("a", 0),
        ("b", 0),
        ("b", 1),
    ]
    assert next(follow)["request_id"].to_pylist() == ["c"]
    follow.close()
