"""Log store compaction: retention, then each hour's small files merged, then the size cap.

New files are written before the files they replace are deleted, so a crash leaves at worst
duplicates, which readers drop and the next compaction removes. Deleting takes the pipeline's
``deletion_guard`` exclusively, so no reader loses a file it listed.
"""

from __future__ import annotations

import math
import os
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from streams._parquet_files import (
    FileCatalog,
    Partition,
    PathLocks,
    deletion_guard,
    file_size,
    list_files,
    list_partitions,
    overlaps,
    pipeline_files,
    remove_stale_temps,
    to_ms,
    unique_sorted,
    without_keys_of,
)
from streams.log_schema import KEYS_SCHEMA, stored_schema

_STALE_TEMP_S = 3600.0  # a temp file this old belongs to a writer that crashed


@dataclass(frozen=True)
class CompactionReport:
    """Files and stored rows (duplicates included) of one pipeline before and after ``compact``."""

    files_before: int
    files_after: int
    rows_before: int
    rows_after: int


class Compactor:
    """Compacts pipelines' logs; shares the store's file catalog and partition locks.

    :param retention: delete hour partitions that ended longer ago than this.
    :param max_bytes: then delete a pipeline's oldest hours until it fits in this.
    :param target_rows: rows per file after compaction; files under half of it are merged.
    """

    def __init__(
        self,
        catalog: FileCatalog,
        locks: PathLocks,
        *,
        retention: timedelta | None,
        max_bytes: int | None,
        target_rows: int,
    ) -> None:
        self._catalog = catalog
        self._locks = locks
        self._retention = retention
        self._max_bytes = max_bytes
        self._target_rows = target_rows

    def compact(self, pipeline_dir: Path) -> CompactionReport:
        """Apply retention, merge each hour's small files (dropping duplicates), apply the cap."""
        with self._locks.of(pipeline_dir):  # one compaction of a pipeline at a time
            before = pipeline_files(pipeline_dir)
            rows_before = sum(self._catalog.meta(f).num_rows for f in before)
            partitions = list_partitions(pipeline_dir)
            if self._retention is not None:
                cutoff = to_ms(datetime.now(UTC) - self._retention)
                for partition in [p for p in partitions if p.end_ms <= cutoff]:
                    self._drop(partition)
                partitions = [p for p in partitions if p.end_ms > cutoff]
            for partition in partitions:
                self._merge(partition)
            if self._max_bytes is not None:
                sizes = [sum(file_size(f) for f in list_files(p)) for p in partitions]
                total = sum(sizes)
                for partition, size in zip(partitions, sizes):  # oldest first
                    if total <= self._max_bytes:
                        break
                    self._drop(partition)
                    total -= size
            after = pipeline_files(pipeline_dir)
            rows_after = sum(self._catalog.meta(f).num_rows for f in after)
        return CompactionReport(len(before), len(after), rows_before, rows_after)

    def _merge(self, partition: Partition) -> None:
        with self._locks.of(partition.path):
            remove_stale_temps(partition, _STALE_TEMP_S)
            files = list_files(partition)
            small = [f for f in files if self._catalog.meta(f).num_rows < self._target_rows // 2]
            big = [f for f in files if f not in small]
            if len(small) < 2 and not (small and big):
                return
            merged = self._catalog.read(small, stored_schema(self._catalog, small))
            merged = unique_sorted(merged, newest_first=False)
            # A repeated row is an identical copy, its time too: only big files whose span
            # meets the small files' can hold one. Reading every big file's keys made each
            # pass cost more as the hour filled.
            span = (min(f.min_ms for f in small), max(f.max_ms for f in small) + 1)
            near = [f for f in big if overlaps(f.min_ms, f.max_ms + 1, span)]
            if near:
                merged = without_keys_of(merged, self._catalog.read(near, KEYS_SCHEMA))
            if len(small) == 1 and merged.num_rows == self._catalog.meta(small[0]).num_rows:
                return  # a lone small file with nothing to drop: rewriting it gains nothing
            if merged.num_rows:
                files_needed = math.ceil(merged.num_rows / self._target_rows)
                per_file = math.ceil(merged.num_rows / files_needed)
                for lo in range(0, merged.num_rows, per_file):
                    self._catalog.write(partition.path, merged.slice(lo, per_file))
            with deletion_guard(partition.path.parent.parent, exclusive=True):
                for file in small:
                    os.remove(file.path)
                    self._catalog.forget(file)

    def _drop(self, partition: Partition) -> None:
        pipeline_dir = partition.path.parent.parent
        with self._locks.of(partition.path), deletion_guard(pipeline_dir, exclusive=True):
            for file in list_files(partition):
                self._catalog.forget(file)
            shutil.rmtree(partition.path, ignore_errors=True)
            try:
                os.rmdir(partition.path.parent)  # the date directory, once its last hour is gone
            except OSError:
                pass
