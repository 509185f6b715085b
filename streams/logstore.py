"""The log store: every inference row a pipeline produced, kept as Parquet and queryable.

Layout: ``<root>/<workspace>/<pipeline>/date=YYYY-MM-DD/hour=HH/<min ms>_<max ms>_<uuid>.parquet``
(see ``streams._parquet_files``). ``append`` writes one zstd file per hour a batch touches;
``compact`` merges an hour's small files into files of about ``target_file_rows`` and applies
retention (``streams.log_compaction``). Files are immutable: only ever created whole (temp name,
then rename) or deleted.

Rules a reader can rely on:

- A row is identified by ``(request_id, row)``. Delivery is at least once, so a row may be stored
  more than once (identical copies, hence with the same ``time`` and hour); reads return it once.
- ``query`` returns newest first, ``iter_batches`` oldest first; ties on ``time`` are broken by
  ``request_id`` then ``row``, both ascending.
- Schema (``streams.log_schema``): a pipeline's columns are the union of its files' columns, unified with
  ``pa.unify_schemas(..., promote_options="permissive")``. A column missing from older (or newer)
  files comes back as nulls for their rows; numbers widen (int32 -> int64, int -> double).
  ``append`` refuses a batch whose column types cannot be unified with what is stored (``out.a``
  was a number and is now a string), so the store always stays queryable.
- Times are UTC (a naive ``datetime`` is taken as UTC); ranges are ``[start, end)``.

Threads and processes may append, compact and query at once. Append and compaction take a thread
lock on the hour partition they change. Readers hold a shared ``flock`` on ``<pipeline>/.lock``
while they list and read, and deleting files takes it exclusively, so a listed file cannot vanish
mid-read; should one vanish anyway (deleted by hand), the reader lists again and retries once.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine.columns import REQUEST_ID, ROW, TIME
from streams._parquet_files import (
    HOUR_MS,
    DataFile,
    FileCatalog,
    Partition,
    PathLocks,
    deletion_guard,
    file_size,
    list_files,
    list_partitions,
    overlaps,
    partition_path,
    pipeline_files,
    row_filter,
    subdirs,
    unique_rows,
    unique_sorted,
)
from streams.log_compaction import CompactionReport, Compactor
from streams.log_schema import (
    KEYS_SCHEMA,
    LogQueryError,
    LogStoreError,
    check_compatible,
    projection,
    stored_schema,
    time_span,
    validated,
)

T = TypeVar("T")

IDENTITY_FILE = ".store.json"
"""Names the store (its log agents' consumer group) and when it began taking rows."""


class LogStore:
    """Parquet log store for every pipeline's inference rows.

    Example::

        store = LogStore(Path("/data/logs"), retention=timedelta(days=30))
        store.append("default", "ccfraud", batch)
        failed = store.query("default", "ccfraud", valid=False, limit=20)

    :param root: directory holding ``<workspace>/<pipeline>/...``.
    :param retention: ``compact`` deletes hour partitions that ended longer ago than this.
    :param max_bytes: ``compact`` then deletes a pipeline's oldest hours until it fits in this.
    :param target_file_rows: rows per file after compaction; files under half of it are merged.
    """

    def __init__(
        self,
        root: Path,
        *,
        retention: timedelta | None = None,
        max_bytes: int | None = None,
        target_file_rows: int = 250_000,
    ) -> None:
        self._root = Path(root)
        self._locks = PathLocks()
        self._catalog = FileCatalog()
        self._compactor = Compactor(
            self._catalog,
            self._locks,
            retention=retention,
            max_bytes=max_bytes,
            target_rows=target_file_rows,
        )
        self._accepted: dict[Path, pa.Schema] = {}  # the last batch schema append checked

    def identity(self) -> tuple[str, int]:
        """The store's id and since when (ms since the epoch) it takes rows, made the first
        time they are asked for: 0 for a store that held rows before it had an id.

        Servers writing one store share its id, so their log agents split the work between
        them; another store on the same broker (another stack's) takes every answer itself,
        from the time it was made.
        """
        path = self._root / IDENTITY_FILE
        if not path.exists():
            self._name_the_store(path)
        said = json.loads(path.read_text())
        return str(said["id"]), int(said["since_ms"])

    def _name_the_store(self, path: Path) -> None:
        """Write the identity file whole (a draft, then a link to it), unless another server
        wrote it first."""
        self._root.mkdir(parents=True, exist_ok=True)
        made = {
            "id": uuid.uuid4().hex,
            "since_ms": 0 if subdirs(self._root) else int(time.time() * 1000),
        }
        draft = path.with_name(f"{IDENTITY_FILE}.{made['id']}")
        draft.write_text(json.dumps(made))
        try:  # a link is made whole or not at all: of servers starting at once, one names it
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            draft.unlink()

    def append(self, workspace: str, pipeline: str, batch: pa.RecordBatch | pa.Table) -> None:
        """Store a batch of log rows: one Parquet file per hour the batch's ``time`` spans.

        :param batch: log rows with at least the columns of ``REQUIRED_SCHEMA``.
        :raises LogSchemaError: a required column is missing or has the wrong type, or a column's
            type cannot be unified with the type stored earlier.
        """
        pipeline_dir = self._pipeline_dir(workspace, pipeline)
        table = validated(pa.table(batch))
        if table.num_rows == 0:
            return
        if self._accepted.get(pipeline_dir) != table.schema:
            check_compatible(self._schema(pipeline_files(pipeline_dir)), table.schema, pipeline_dir)
            self._accepted[pipeline_dir] = table.schema
        table = unique_rows(table)
        hours = table.column(TIME).cast(pa.int64()).to_numpy() // HOUR_MS
        if hours.min() != hours.max():  # rows come in arrival order: group them by hour
            order = pc.sort_indices(table, sort_keys=[(TIME, "ascending")])
            table = table.take(order)
            hours = hours[order.to_numpy()]
        bounds = [0, *(np.flatnonzero(np.diff(hours)) + 1).tolist(), table.num_rows]
        for lo, hi in zip(bounds, bounds[1:]):
            directory = partition_path(pipeline_dir, int(hours[lo]) * HOUR_MS)
            with self._locks.of(directory):
                directory.mkdir(parents=True, exist_ok=True)
                self._catalog.write(directory, table.slice(lo, hi - lo))

    def query(
        self,
        workspace: str,
        pipeline: str,
        *,
        limit: int | None = 100,
        start: datetime | None = None,
        end: datetime | None = None,
        valid: bool | None = None,
        columns: Sequence[str] | None = None,
    ) -> pa.Table:
        """Log rows, newest first, each ``(request_id, row)`` once.

        :param limit: at most this many rows; ``None`` returns every match.
        :param start: with ``end``, keep rows with ``start <= time < end``.
        :param valid: ``True`` keeps rows whose checks all passed, ``False`` those with a failure.
        :param columns: the columns to return (default: all the pipeline ever logged).
        :raises LogQueryError: only one of start/end given, start after end, or an unknown column.
        """
        if limit is not None and limit < 0:
            raise LogQueryError(f"limit must be zero or more, got {limit}")
        span = time_span(start, end)
        pipeline_dir = self._pipeline_dir(workspace, pipeline)

        def read() -> pa.Table:
            with deletion_guard(pipeline_dir, exclusive=False):
                return self._query(pipeline_files(pipeline_dir), limit, span, valid, columns)

        return self._retrying(read)

    def iter_batches(
        self,
        workspace: str,
        pipeline: str,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        valid: bool | None = None,
        columns: Sequence[str] | None = None,
        batch_rows: int = 65_536,
    ) -> Iterator[pa.RecordBatch]:
        """Every matching log row, oldest first and once, one hour partition in memory at a time.

        Parameters as for ``query``; batches hold at most ``batch_rows`` rows.
        """
        span = time_span(start, end)
        pipeline_dir = self._pipeline_dir(workspace, pipeline)
        out, read_schema = projection(self._schema(pipeline_files(pipeline_dir)), columns)
        expr = row_filter(span, valid)

        def read(partition: Partition) -> pa.Table:
            with deletion_guard(pipeline_dir, exclusive=False):
                files = list_files(partition)
                found = self._catalog.read(
                    [f for f in files if overlaps(f.min_ms, f.max_ms + 1, span)], read_schema, expr
                )
            return unique_sorted(found, newest_first=False)

        def batches() -> Iterator[pa.RecordBatch]:
            for partition in list_partitions(pipeline_dir):
                if overlaps(partition.start_ms, partition.end_ms, span):
                    table = self._retrying(partial(read, partition)).select(out.names)
                    yield from table.combine_chunks().to_batches(batch_rows)

        return batches()

    def compact(self, workspace: str, pipeline: str) -> CompactionReport:
        """Apply retention, then merge each hour's small files, dropping duplicate rows.

        New files are written before the files they replace are deleted, so a crash leaves at
        worst duplicates, which readers drop and the next compaction removes.
        """
        return self._compactor.compact(self._pipeline_dir(workspace, pipeline))

    def delete(self, workspace: str, pipeline: str) -> None:
        """Delete every log row of a pipeline: its files and its directory."""
        pipeline_dir = self._pipeline_dir(workspace, pipeline)
        with self._locks.of(pipeline_dir), deletion_guard(pipeline_dir, exclusive=True):
            for file in pipeline_files(pipeline_dir):
                self._catalog.forget(file)
            for partition in list_partitions(pipeline_dir):
                shutil.rmtree(partition.path.parent, ignore_errors=True)  # its date directory
        shutil.rmtree(pipeline_dir, ignore_errors=True)

    def pipelines(self) -> list[tuple[str, str]]:
        """The (workspace, pipeline) pairs that have at least one stored log file."""
        return [
            (workspace, pipeline)
            for workspace in subdirs(self._root)
            for pipeline in subdirs(self._root / workspace)
            if any(list_files(p) for p in list_partitions(self._root / workspace / pipeline))
        ]

    def count(self, workspace: str, pipeline: str) -> int:
        """The number of distinct ``(request_id, row)`` stored for a pipeline."""

        def distinct(partition: Partition) -> int:
            with deletion_guard(pipeline_dir, exclusive=False):
                keys = self._catalog.read(list_files(partition), KEYS_SCHEMA)
            return int(keys.group_by([REQUEST_ID, ROW]).aggregate([]).num_rows)

        pipeline_dir = self._pipeline_dir(workspace, pipeline)
        partitions = list_partitions(pipeline_dir)
        return sum(self._retrying(partial(distinct, p)) for p in partitions)

    def usage(self, workspace: str, pipeline: str) -> tuple[int, int]:
        """Rows and bytes stored for a pipeline (a repeat counts until compaction drops it)."""
        pipeline_dir = self._pipeline_dir(workspace, pipeline)

        def read() -> tuple[int, int]:
            files = pipeline_files(pipeline_dir)
            return (
                sum(self._catalog.meta(f).num_rows for f in files),
                sum(file_size(f) for f in files),
            )

        return self._retrying(read)

    def column_names(self, workspace: str, pipeline: str) -> list[str]:
        """Every column the pipeline's logs ever had (the required ones if it has none)."""
        pipeline_dir = self._pipeline_dir(workspace, pipeline)
        return self._retrying(lambda: self._schema(pipeline_files(pipeline_dir)).names)

    def _query(
        self,
        files: list[DataFile],
        limit: int | None,
        span: tuple[int, int] | None,
        valid: bool | None,
        columns: Sequence[str] | None,
    ) -> pa.Table:
        out, read_schema = projection(self._schema(files), columns)
        expr = row_filter(span, valid)
        pending = [f for f in files if limit != 0 and overlaps(f.min_ms, f.max_ms + 1, span)]
        pending.sort(key=lambda f: (f.max_ms, f.min_ms), reverse=True)
        if limit is None:
            found = self._catalog.read(pending, read_schema, expr)
            return unique_sorted(found, newest_first=True).select(out.names)
        # Read newest files in doubling waves. With `limit` rows in hand, a file whose newest
        # row is older than the oldest row kept cannot change the answer: stop before it.
        found, wave, oldest_kept = read_schema.empty_table(), 1, None
        while pending:
            if oldest_kept is None:
                batch, pending, wave = pending[:wave], pending[wave:], wave * 2
            else:
                newer = sum(1 for f in pending if f.max_ms >= oldest_kept)
                if newer == 0:
                    break
                batch, pending = pending[:newer], pending[newer:]
            both = pa.concat_tables([found, self._catalog.read(batch, read_schema, expr)])
            found = unique_sorted(both, newest_first=True, limit=limit)
            if found.num_rows == limit:
                oldest_kept = found.column(TIME)[limit - 1].cast(pa.int64()).as_py()
        return found.select(out.names)

    def _schema(self, files: list[DataFile]) -> pa.Schema:
        return stored_schema(self._catalog, files)

    def _pipeline_dir(self, workspace: str, pipeline: str) -> Path:
        for name in (workspace, pipeline):
            if not name or name.startswith(".") or "/" in name or "\\" in name:
                raise LogStoreError(
                    f"invalid workspace or pipeline name {name!r}: use a non-empty name "
                    "without slashes that does not start with a dot"
                )
        return self._root / workspace / pipeline

    @staticmethod
    def _retrying(read: Callable[[], T]) -> T:
        """Run ``read``, once more if a file it listed was deleted (compaction, retention)."""
        try:
            return read()
        except FileNotFoundError:
            return read()
