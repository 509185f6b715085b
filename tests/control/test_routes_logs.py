"""control/server/routes/logs.py over control/log_queries.py, in process: pages and their
cursors, column groups, challengers' rows joined on, the export's frames; reads of the store
off the event loop."""

from __future__ import annotations

import asyncio
import io
import os
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from control.embedded import Service
from control.log_queries import LogQueries
from engine import codecs
from streams.logstore import LogStore
from streams.shadow_logs import shadow_pipeline
from tests.control._asgi import InProcess, in_process

WS = "default"
DEFAULT_POOL = min(32, (os.cpu_count() or 1) + 4)
"""asyncio's default thread pool: how many threads `asyncio.to_thread` has."""


@pytest.fixture
async def server(redis_service: Service, tmp_path: Path) -> AsyncIterator[InProcess]:
    async for served in in_process(redis_service, tmp_path / "home"):
        served.state.registry.get_or_create_pipeline(WS, "p")
        yield served


def rows(
    n: int, *, at_ms: int = 1_700_000_000_000, rid: str = "r", **extra: list[object]
) -> pa.Table:
    """`n` log rows of one request, all in one millisecond (cursors must still page them)."""
    return pa.table(
        {
            "time": pa.array([at_ms] * n, pa.timestamp("ms", "UTC")),
            "request_id": [rid] * n,
            "row": pa.array(range(n), pa.int32()),
            "anomaly.count": pa.array([0] * n, pa.int32()),
            "check_failures": pa.array([0] * n, pa.int32()),
            "metadata.pipeline_version": ["v"] * n,
            "metadata.elapsed_ns": [1] * n,
            "metadata.model": ["m"] * n,
            "metadata.row": list(range(n)),
            "in.x": [float(i) for i in range(n)],
            "out.y": [2.0 * i for i in range(n)],
            **extra,
        }
    )


def store_of(server: InProcess) -> LogStore:
    return server.state.log_store


async def test_pages_follow_their_cursors_to_the_last_row(server: InProcess) -> None:
    store_of(server).append(WS, "p", rows(5))
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        answer = await server.http.get("/pipelines/p/logs", params=params)
        assert answer.status_code == 200, answer.text
        seen += [r["row"] for r in answer.json()]
        pages += 1
        cursor = answer.headers.get("x-next-cursor")
        if cursor is None:
            break
    assert sorted(seen) == list(range(5)) and len(seen) == 5
    assert pages == 3  # 2 + 2 + 1: the short page has no cursor


async def test_a_page_has_its_rows_columns_by_group(server: InProcess) -> None:
    store_of(server).append(WS, "p", rows(2))
    answer = await server.http.get(
        "/pipelines/p/logs", params={"dataset": ["time", "out"], "format": "arrow"}
    )
    table = pa.ipc.open_file(io.BytesIO(answer.content)).read_all()
    assert table.column_names == ["time", "out.y"]
    everything = (await server.http.get("/pipelines/p/logs")).json()[0]
    assert "metadata.row" not in everything and everything["row"] in (0, 1)  # row says it


async def test_an_unknown_group_and_a_bad_cursor_say_what_to_use(server: InProcess) -> None:
    answer = await server.http.get("/pipelines/p/logs", params={"dataset": "outs"})
    assert answer.status_code == 400
    assert "unknown dataset 'outs': use a group of time, in, out" in answer.json()["message"]
    answer = await server.http.get("/pipelines/p/logs", params={"cursor": "not-a-cursor"})
    assert answer.status_code == 400
    assert "pass back the next_cursor of the previous page" in answer.json()["message"]


async def test_an_unknown_pipeline_is_not_found(server: InProcess) -> None:
    answer = await server.http.get("/pipelines/nope/logs")
    assert answer.status_code == 404 and "pipeline 'nope' not found" in answer.json()["message"]


async def test_challengers_rows_join_the_champions(server: InProcess) -> None:
    store_of(server).append(WS, "p", rows(2))
    store_of(server).append(
        WS,
        shadow_pipeline("p", "b"),
        rows(2, at_ms=1_700_000_000_050, **{"out_b.y": [7.0, 8.0], "metadata.shadow": ["b", "b"]}),
    )
    page = (await server.http.get("/pipelines/p/logs")).json()
    assert {r["row"]: r["out_b.y"] for r in page} == {0: 7.0, 1: 8.0}


async def test_the_export_frames_every_row_oldest_first(server: InProcess) -> None:
    store_of(server).append(WS, "p", rows(3))
    answer = await server.http.get("/pipelines/p/logs/export", params={"dataset": "out"})
    assert answer.headers["x-total-rows"] == "3"
    body, frames = answer.content, []
    while body:
        size = int.from_bytes(body[:8], "big")
        frames.append(codecs.decode(body[8 : 8 + size], codecs.ARROW_STREAM))
        body = body[8 + size :]
    assert [b.column_names for b in frames] == [["out.y"]]
    assert frames[0].column("out.y").to_pylist() == [0.0, 2.0, 4.0]


async def test_the_experiment_counts_rows_per_model(server: InProcess) -> None:
    store_of(server).append(WS, "p", rows(4))
    summary = (await server.http.get("/pipelines/p/experiment")).json()
    assert summary["rows"] == 4 and summary["models"]["m"]["rows"] == 4


async def test_log_queries_wait_for_the_log_agent_first(server: InProcess) -> None:
    """Rows the agent stores while a query waits on it are in the answer."""
    store = store_of(server)

    async def sync(workspace: str, pipeline: str) -> None:
        store.append(workspace, pipeline, rows(1, rid="late"))

    queries = LogQueries(server.state.registry, store, sync)
    page = await queries.page(WS, "p", limit=10)
    assert page.table.column("request_id").to_pylist() == ["late"]


@pytest.mark.parametrize(
    ("path", "reading"),
    [
        ("/pipelines/p/logs", "query"),
        ("/pipelines/p/experiment", "query"),
        ("/pipelines/p/logs/export", "count"),
    ],
)
async def test_a_long_read_of_the_store_holds_its_request_not_the_event_loop(
    server: InProcess, monkeypatch: pytest.MonkeyPatch, path: str, reading: str
) -> None:
    """The store's read waits until the test lets it go; meanwhile the loop runs on (before,
    the read ran on the loop: the request was over before the loop ran again)."""
    store = store_of(server)
    store.append(WS, "p", rows(3))
    let_go = threading.Event()
    read = getattr(store, reading)

    def held(*args: Any, **kwargs: Any) -> Any:
        let_go.wait(5)
        return read(*args, **kwargs)

    monkeypatch.setattr(store, reading, held)
    asking = asyncio.create_task(server.http.get(path))
    for _ in range(5):
        await asyncio.sleep(0.01)
    assert not asking.done(), "the request held the event loop until its read was over"
    let_go.set()
    assert (await asking).status_code == 200


async def test_long_log_queries_leave_the_default_thread_pool_to_the_rest(
    server: InProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More held log queries than the default pool has threads: a registry lookup (as the
    gateway's, in `asyncio.to_thread`) is still answered meanwhile."""
    store = store_of(server)
    store.append(WS, "p", rows(3))
    let_go = threading.Event()
    query = store.query

    def held(*args: Any, **kwargs: Any) -> Any:
        let_go.wait(10)
        return query(*args, **kwargs)

    monkeypatch.setattr(store, "query", held)
    asking = [
        asyncio.create_task(server.http.get("/pipelines/p/logs")) for _ in range(DEFAULT_POOL + 2)
    ]
    try:
        await asyncio.sleep(0.1)
        looked_up = await asyncio.wait_for(
            asyncio.to_thread(server.state.registry.get_pipeline, WS, "p"), 5
        )
        assert looked_up.name == "p"
        assert not any(task.done() for task in asking)
    finally:
        let_go.set()
    assert {(await task).status_code for task in asking} == {200}
