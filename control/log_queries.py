"""Queries of a pipeline's logs, for `GET /pipelines/<name>/logs` and its kin: pages read
with cursors, exports, an experiment's figures; challengers' rows joined onto the champion's.

Every query first waits for the log agent to store what was answered before it
(`sync`), so a caller sees every inference it made. The store is read in threads of the
queries' own (QUERY_THREADS): a query of many rows takes its time there, not from the
server's event loop and the inference requests on it, nor from the default thread pool
that their short registry lookups use.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.compute as pc

from control.registry import Registry
from engine.columns import GROUPS, META_ROW, REQUEST_ID, ROW, TIME, group
from engine.experiments import experiment_summary
from streams.log_schema import LogQueryError
from streams.logstore import LogStore
from streams.shadow_logs import attach_shadows, read_shadows

SHADOW_LAG = timedelta(minutes=5)
"""How much later than the champion a challenger's row may be stored."""
CURSOR_MARGIN_ROWS = 1000
"""Rows sharing the cursor row's millisecond may come before it: a page after a cursor reads
this many more, then drops those."""

T = TypeVar("T")
QUERY_THREADS = 2
"""How many log queries read the store at once; more wait their turn (on two cores more
would not finish sooner)."""

Sync = Callable[[str, str], Awaitable[Any]]
"""Waits until what was answered for (workspace, pipeline) is in the store (LogAgent.sync)."""


@dataclass(frozen=True)
class LogPage:
    table: pa.Table
    """Newest first, with the columns its rows have (`present_columns`)."""
    next_cursor: str | None
    """Set on a full page: where the next, older page starts."""


class LogQueries:
    """What the log routes ask of the log store."""

    def __init__(self, registry: Registry, store: LogStore, sync: Sync) -> None:
        self._registry = registry
        self._store = store
        self._sync = sync
        self._threads = ThreadPoolExecutor(QUERY_THREADS, thread_name_prefix="weir-log-query")

    def close(self) -> None:
        """Let the query threads go (a query still reading finishes first)."""
        self._threads.shutdown(wait=False, cancel_futures=True)

    async def in_thread(self, work: Callable[..., T], *args: Any) -> T:
        """`work(*args)` in a log query thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._threads, functools.partial(work, *args))

    async def _synced(self, workspace: str, name: str) -> None:
        # EntityNotFoundError for a typo
        await asyncio.to_thread(self._registry.get_pipeline, workspace, name)
        await self._sync(workspace, name)

    async def page(
        self,
        workspace: str,
        name: str,
        *,
        limit: int,
        start: datetime | None = None,
        end: datetime | None = None,
        valid: bool | None = None,
        cursor: str | None = None,
        dataset: list[str] | None = None,
        exclude: list[str] | None = None,
    ) -> LogPage:
        """Up to `limit` rows, newest first, from after `cursor` (a previous page's
        `next_cursor`, with the same filters), with the challengers' outputs beside them."""
        await self._synced(workspace, name)
        return await self.in_thread(
            self._page, workspace, name, limit, start, end, valid, cursor, dataset, exclude
        )

    def _page(
        self,
        workspace: str,
        name: str,
        limit: int,
        start: datetime | None,
        end: datetime | None,
        valid: bool | None,
        cursor: str | None,
        dataset: list[str] | None,
        exclude: list[str] | None,
    ) -> LogPage:
        if cursor is None:
            table = self._store.query(
                workspace, name, limit=limit, start=start, end=end, valid=valid
            )
        else:
            wide = self._store.query(
                workspace,
                name,
                limit=2 * limit + CURSOR_MARGIN_ROWS,
                start=start,
                end=end,
                valid=valid,
            )
            table = _after_cursor(wide, cursor).slice(0, limit)
        table = attach_shadows(table, self._shadows_near(workspace, name, table))
        next_cursor = _cursor(table) if table.num_rows == limit and limit else None
        table = present_columns(table.select(select_columns(table.schema.names, dataset, exclude)))
        return LogPage(table, next_cursor)

    async def export(
        self,
        workspace: str,
        name: str,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        valid: bool | None = None,
        dataset: list[str] | None = None,
        exclude: list[str] | None = None,
    ) -> tuple[int, Iterator[pa.RecordBatch]]:
        """How many rows the pipeline has stored, and every matching row, oldest first, in
        batches (read as they are iterated; batches may differ in columns across versions)."""
        await self._synced(workspace, name)
        total = await self.in_thread(self._store.count, workspace, name)
        batches = (
            batch.select(select_columns(batch.schema.names, dataset, exclude))
            for batch in self._store.iter_batches(
                workspace, name, start=start, end=end, valid=valid
            )
        )
        return total, batches

    async def experiment(
        self,
        workspace: str,
        name: str,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> dict[str, Any]:
        """Per-model figures of the pipeline's split or shadow (engine.experiments)."""
        await self._synced(workspace, name)
        return await self.in_thread(self._experiment, workspace, name, start, end)

    def _experiment(
        self, workspace: str, name: str, start: datetime | None, end: datetime | None
    ) -> dict[str, Any]:
        primary = self._store.query(workspace, name, limit=None, start=start, end=end)
        shadows = read_shadows(self._store, workspace, name, start=start, end=end)
        return experiment_summary(attach_shadows(primary, shadows), shadows)

    def _shadows_near(self, workspace: str, name: str, table: pa.Table) -> pa.Table:
        """Challenger rows in the time span of `table` (challengers answer a little later)."""
        if table.num_rows == 0:
            return pa.table({})
        times = table[TIME]
        return read_shadows(
            self._store,
            workspace,
            name,
            start=pc.min(times).as_py() - SHADOW_LAG,
            end=pc.max(times).as_py() + SHADOW_LAG,
        )


def select_columns(
    names: list[str], dataset: list[str] | None, exclude: list[str] | None
) -> list[str]:
    """Columns chosen by group (`time`, `in`, `out`, `check_failures`, `anomaly`, `metadata`)
    or by exact name; shadow outputs (`out_<model>.*`) belong to `out`."""

    def chosen(column: str, picks: list[str]) -> bool:
        return column in picks or group(column) in picks

    for pick in [*(dataset or []), *(exclude or [])]:
        if pick not in GROUPS and pick not in names:
            raise LogQueryError(
                f"unknown dataset {pick!r}: use a group of {', '.join(GROUPS)} "
                f"or a column of {', '.join(names)}"
            )
    keep = [n for n in names if dataset is None or chosen(n, dataset)]
    return [n for n in keep if not (exclude and chosen(n, exclude))]


def present_columns(table: pa.Table) -> pa.Table:
    """The columns the rows have: without those null in every row (a column of another
    version's schema, or of an input field these requests did not send) and without
    `metadata.row`, which repeats `row`. With no rows, every column stays."""
    if table.num_rows == 0:
        return table
    keep = [
        name
        for name, column in zip(table.column_names, table.columns)
        if name != META_ROW and column.null_count < table.num_rows
    ]
    return table.select(keep)


def _cursor(table: pa.Table) -> str | None:
    if table.num_rows == 0:
        return None
    last = {k: table.column(k)[table.num_rows - 1].as_py() for k in (TIME, REQUEST_ID, ROW)}
    last[TIME] = last[TIME].isoformat()
    return base64.urlsafe_b64encode(json.dumps(last).encode()).decode()


def _after_cursor(table: pa.Table, cursor: str) -> pa.Table:
    """Rows that come after the cursor row in newest-first order (time desc, id asc, row asc)."""
    try:
        last = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        at = pa.scalar(datetime.fromisoformat(last[TIME]), table.schema.field(TIME).type)
    except (ValueError, KeyError, TypeError) as exc:
        raise LogQueryError(
            "malformed cursor: pass back the next_cursor of the previous page"
        ) from exc
    older = pc.less(table[TIME], at)
    same = pc.equal(table[TIME], at)
    later_id = pc.or_(
        pc.greater(table[REQUEST_ID], last[REQUEST_ID]),
        pc.and_(pc.equal(table[REQUEST_ID], last[REQUEST_ID]), pc.greater(table[ROW], last[ROW])),
    )
    return table.filter(pc.or_(older, pc.and_(same, later_id)))
