"""The log store's files: hour partitions of immutable Parquet files, and a catalog to read them.

A pipeline's logs live in ``<pipeline dir>/date=YYYY-MM-DD/hour=HH/``. Each file is named
``<min ms>_<max ms>_<uuid>.parquet`` after the smallest and largest ``time`` it holds (milliseconds
since the epoch), so readers prune files by name without opening them. Files are written under a
``.tmp-`` name and renamed into place, so a reader never sees a half-written file.
"""

from __future__ import annotations

import fcntl
import functools
import operator
import os
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from engine.columns import ANOMALY_COUNT, REQUEST_ID, ROW, TIME, TIME_TYPE

HOUR_MS = 3_600_000
_TMP_PREFIX = ".tmp-"
_ROW_GROUP_ROWS = 65_536  # small enough that a time filter skips row groups inside a big file
_PARQUET, _LOCAL = ds.ParquetFileFormat(), pafs.LocalFileSystem()


@dataclass(frozen=True)
class DataFile:
    """One Parquet file and the time span its name records (``max_ms`` included)."""

    path: str  # a str, not a Path: queries list thousands of files and Path() is slow
    min_ms: int
    max_ms: int


@dataclass(frozen=True)
class Partition:
    """One ``date=/hour=`` directory; it holds rows with ``start_ms <= time < start_ms + 1h``."""

    path: Path
    start_ms: int

    @property
    def end_ms(self) -> int:
        return self.start_ms + HOUR_MS


def to_ms(moment: datetime) -> int:
    """Milliseconds since the epoch; a naive datetime is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def partition_path(pipeline_dir: Path, hour_ms: int) -> Path:
    hour = datetime.fromtimestamp(hour_ms / 1000, UTC)
    return pipeline_dir / f"date={hour:%Y-%m-%d}" / f"hour={hour:%H}"


def list_partitions(pipeline_dir: Path) -> list[Partition]:
    """Every hour partition of a pipeline, oldest first; an unknown pipeline has none."""
    partitions = []
    try:
        dates = list(os.scandir(pipeline_dir))
    except FileNotFoundError:
        return []
    for date_entry in dates:
        if not date_entry.name.startswith("date="):
            continue
        try:
            hours = list(os.scandir(date_entry.path))
        except FileNotFoundError:  # removed by retention while we listed
            continue
        for hour_entry in hours:
            if not hour_entry.name.startswith("hour="):
                continue
            start = datetime.strptime(
                f"{date_entry.name[5:]} {hour_entry.name[5:]}", "%Y-%m-%d %H"
            ).replace(tzinfo=UTC)
            partitions.append(Partition(Path(hour_entry.path), to_ms(start)))
    return sorted(partitions, key=lambda p: p.start_ms)


def pipeline_files(pipeline_dir: Path) -> list[DataFile]:
    """Every data file of a pipeline, oldest hour first."""
    return [f for p in list_partitions(pipeline_dir) for f in list_files(p)]


def list_files(partition: Partition) -> list[DataFile]:
    """The data files of a partition (temporary files are skipped)."""
    files = []
    try:
        entries = list(os.scandir(partition.path))
    except FileNotFoundError:
        return []
    for entry in entries:
        parts = entry.name.removesuffix(".parquet").split("_")
        if not entry.name.startswith(".") and entry.name.endswith(".parquet") and len(parts) == 3:
            files.append(DataFile(entry.path, int(parts[0]), int(parts[1])))
    return files


@contextmanager
def deletion_guard(pipeline_dir: Path, *, exclusive: bool) -> Iterator[None]:
    """Readers hold this shared while they list and read; deleting files takes it exclusively.

    So a reader never loses a file between listing and opening it, even while compaction
    deletes the files it merged. It is a ``flock`` on ``<pipeline dir>/.lock``, so it holds
    across threads and processes alike.
    """
    try:
        fd: int | None = os.open(pipeline_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    except FileNotFoundError:  # the pipeline has no logs yet: nothing to guard
        fd = None
    try:
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        if fd is not None:
            os.close(fd)  # closing releases the lock


def write_atomic(directory: Path, table: pa.Table) -> DataFile:
    """Write ``table`` as one zstd Parquet file named after its time span.

    Only text columns are dictionary-encoded: tried on every column, a 256k-row flush of
    results took 1.8x as long to write and came out 1.8x bigger (floats rarely repeat, so
    the writer builds each dictionary only to give it up).
    """
    times = table.column(TIME).cast(pa.int64())
    min_ms, max_ms = pc.min(times).as_py(), pc.max(times).as_py()
    name = f"{min_ms}_{max_ms}_{uuid.uuid4().hex}.parquet"
    tmp = directory / f"{_TMP_PREFIX}{name}"
    text = [f.name for f in table.schema if _is_text(f.type)]
    pq.write_table(
        table, tmp, compression="zstd", row_group_size=_ROW_GROUP_ROWS, use_dictionary=text
    )
    os.replace(tmp, directory / name)
    return DataFile(str(directory / name), min_ms, max_ms)


def remove_stale_temps(partition: Partition, older_than_s: float) -> None:
    """Delete temporary files a crashed writer left behind."""
    cutoff = time.time() - older_than_s
    for entry in os.scandir(partition.path):
        if entry.name.startswith(_TMP_PREFIX) and entry.stat().st_mtime < cutoff:
            Path(entry.path).unlink(missing_ok=True)


def _is_text(kind: pa.DataType) -> bool:
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind))


def unique_rows(table: pa.Table) -> pa.Table:
    """``table`` with each ``(request_id, row)`` once (its first copy), in the order given.

    Keys are hashed, not sorted: a flush's rows seldom repeat, and sorting the whole
    table by them was the log agent's second cost after writing.
    """
    if table.num_rows < 2:
        return table
    ids = pc.dictionary_encode(table.column(REQUEST_ID)).combine_chunks().indices
    rows = table.column(ROW).to_numpy()
    keys = (ids.to_numpy().astype(np.int64) << 32) | (rows.astype(np.int64) & 0xFFFFFFFF)
    _, first = np.unique(keys, return_index=True)
    return table if len(first) == len(keys) else table.take(np.sort(first))


def unique_sorted(table: pa.Table, *, newest_first: bool, limit: int | None = None) -> pa.Table:
    """Rows ordered by time (newest or oldest first), then request id, then row, each row once.

    Redelivered rows are identical copies, so equal (request_id, row) keys share a time and sort
    next to each other: dropping a row equal to its predecessor removes every duplicate. Only the
    key columns are reordered until the rows to return are known.
    """
    order = "descending" if newest_first else "ascending"
    sort_keys = [(TIME, order), (REQUEST_ID, "ascending"), (ROW, "ascending")]
    indices = pc.sort_indices(table, sort_keys=sort_keys)
    n = len(indices)
    if n > 1:
        # The keys in one chunk first: taking strings across a chunk per file read cost
        # ~20x more (2M rows over 200 chunks: 0.57 s against 0.02).
        keys = table.select([REQUEST_ID, ROW]).combine_chunks().take(indices)
        rid, row = keys.column(REQUEST_ID), keys.column(ROW)
        same = pc.and_(
            pc.equal(rid.slice(1), rid.slice(0, n - 1)), pc.equal(row.slice(1), row.slice(0, n - 1))
        )
        if pc.any(same).as_py():
            keep = np.ones(n, dtype=bool)
            keep[1:] = ~same.to_numpy(zero_copy_only=False)
            indices = indices.filter(pa.array(keep))
    if limit is not None:
        indices = indices.slice(0, limit)
    return table.take(indices)


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Give ``table`` exactly ``schema``: cast promoted columns, add absent ones as nulls."""
    columns = []
    for field in schema:
        index = table.schema.get_field_index(field.name)
        if index < 0:
            columns.append(pa.chunked_array([pa.nulls(table.num_rows, field.type)]))
        else:
            column = table.column(index)
            columns.append(column if column.type == field.type else column.cast(field.type))
    return pa.Table.from_arrays(columns, schema=schema)


def overlaps(lo: int, hi: int, span: tuple[int, int] | None) -> bool:
    """Whether ``[lo, hi)`` meets the range ``span`` (always, without a range)."""
    return span is None or (lo < span[1] and hi > span[0])


def row_filter(span: tuple[int, int] | None, valid: bool | None) -> pc.Expression | None:
    """The push-down predicate for a time range and validity (``None``: every row)."""
    parts = []
    if span is not None:
        parts.append(pc.field(TIME) >= pa.scalar(span[0], TIME_TYPE))
        parts.append(pc.field(TIME) < pa.scalar(span[1], TIME_TYPE))
    if valid is not None:
        parts.append(pc.field(ANOMALY_COUNT) == 0 if valid else pc.field(ANOMALY_COUNT) > 0)
    return functools.reduce(operator.and_, parts) if parts else None


def without_keys_of(table: pa.Table, others: pa.Table) -> pa.Table:
    """``table`` without the rows whose (request_id, row) appears in ``others``."""
    indexed = table.select([REQUEST_ID, ROW]).append_column("_i", pa.array(np.arange(len(table))))
    left = indexed.join(others, keys=[REQUEST_ID, ROW], join_type="left anti")
    return table.take(np.sort(left.column("_i").to_numpy()))


def file_size(file: DataFile) -> int:
    try:
        return os.path.getsize(file.path)
    except FileNotFoundError:
        return 0


def subdirs(path: Path) -> list[str]:
    """The names of the visible subdirectories of ``path``, sorted (none if it is missing)."""
    try:
        return sorted(e.name for e in os.scandir(path) if e.is_dir() and not e.name.startswith("."))
    except FileNotFoundError:
        return []


class PathLocks:
    """One thread lock per directory: appends and compaction that change it take it."""

    def __init__(self) -> None:
        self._locks: dict[Path, threading.Lock] = {}
        self._guard = threading.Lock()

    def of(self, path: Path) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(path, threading.Lock())


class FileMeta(NamedTuple):
    schema: pa.Schema
    num_rows: int


class FileCatalog:
    """Each file's schema and row count, read once from its footer, and reads across files.

    Files never change once written, so what is learnt of one stays true until it is deleted.
    """

    def __init__(self) -> None:
        self._metas: dict[str, FileMeta] = {}
        self._interned: dict[pa.Schema, pa.Schema] = {}  # files of one version share one object

    def meta(self, file: DataFile) -> FileMeta:
        meta = self._metas.get(file.path)
        if meta is None:
            footer = pq.read_metadata(file.path)
            meta = self._remember(file.path, footer.schema.to_arrow_schema(), footer.num_rows)
        return meta

    def write(self, directory: Path, table: pa.Table) -> None:
        file = write_atomic(directory, table)
        self._remember(file.path, table.schema, table.num_rows)

    def forget(self, file: DataFile) -> None:
        self._metas.pop(file.path, None)

    def unified_schema(self, files: list[DataFile], default: pa.Schema) -> pa.Schema:
        """The files' schemas unified with permissive promotion (``default`` if no files).

        :raises pa.ArrowTypeError: two files hold a column under types that do not unify.
        """
        unique = list({id(m.schema): m.schema for m in map(self.meta, files)}.values())
        return pa.unify_schemas(unique, promote_options="permissive") if unique else default

    def read(
        self, files: list[DataFile], schema: pa.Schema, expr: pc.Expression | None = None
    ) -> pa.Table:
        """The columns of ``schema`` that match ``expr`` from ``files``, conformed to ``schema``.

        Files sharing a schema are scanned as one dataset: opening many small files in one scan
        costs about half as much as one scan per file.
        """
        groups: dict[int, list[DataFile]] = {}
        for file in files:
            groups.setdefault(id(self.meta(file).schema), []).append(file)
        tables = [schema.empty_table()]
        for group in groups.values():
            file_schema = self.meta(group[0]).schema
            dataset = ds.FileSystemDataset.from_paths(
                [f.path for f in group], schema=file_schema, format=_PARQUET, filesystem=_LOCAL
            )
            present = [n for n in schema.names if n in file_schema.names]
            tables.append(conform(dataset.to_table(columns=present, filter=expr), schema))
        return pa.concat_tables(tables)

    def _remember(self, path: str, schema: pa.Schema, num_rows: int) -> FileMeta:
        schema = schema.remove_metadata()
        meta = FileMeta(self._interned.setdefault(schema, schema), num_rows)
        self._metas[path] = meta
        return meta
