"""`Pipeline.logs()` and `Pipeline.export_logs()`: reading the log store through the server."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from rich.progress import Progress

from engine import codecs

if TYPE_CHECKING:
    import pandas as pd

    from control.sdk._session import Session

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMG]i?B|B)?\s*$", re.IGNORECASE)
_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}


def parse_size(text: str | int) -> int:
    """'100MiB' -> 104857600; ints pass through."""
    if isinstance(text, int):
        return text
    match = _SIZE.match(text)
    if not match:
        raise ValueError(f"cannot read size {text!r}: write e.g. '100MiB', '10MB' or 1048576")
    return int(float(match.group(1)) * _UNITS[(match.group(2) or "B").lower()])


class LogsMixin:
    """Log reading for Pipeline (needs `_session`, `name` and `_path`)."""

    _session: Session

    if TYPE_CHECKING:  # Pipeline's

        @property
        def name(self) -> str: ...

        def _path(self, suffix: str = "") -> str: ...

    def _log_params(
        self,
        start: datetime | None,
        end: datetime | None,
        valid: bool | None,
        dataset: list[str] | None,
        exclude: list[str] | None,
    ) -> dict[str, Any]:
        if (start is None) != (end is None):
            raise ValueError("a time range needs both start_datetime and end_datetime")
        params: dict[str, Any] = {}
        if start is not None and end is not None:
            params.update(start=start.isoformat(), end=end.isoformat())
        if valid is not None:
            params["valid"] = str(valid).lower()
        if dataset:
            params["dataset"] = dataset
        if exclude:
            params["dataset_exclude"] = exclude
        return params

    def logs(
        self,
        limit: int = 100,
        start_datetime: datetime | None = None,
        end_datetime: datetime | None = None,
        valid: bool | None = None,
        dataset: list[str] | None = None,
        dataset_exclude: list[str] | None = None,
        arrow: bool = False,
    ) -> pd.DataFrame | pa.Table:
        """The newest `limit` log rows, newest first; sees every inference answered before it.

        `valid=False` keeps rows that failed a validation; a time range needs both ends;
        `dataset`/`dataset_exclude` pick groups (time, in, out, check_failures, anomaly,
        metadata) or columns. Returns a DataFrame, or a pyarrow.Table with arrow=True.
        """
        params = self._log_params(start_datetime, end_datetime, valid, dataset, dataset_exclude)
        params.update(limit=str(limit), format="arrow")
        response = self._session.request("GET", self._path("/logs"), params=params)
        table = pa.Table.from_batches([codecs.decode(response.content, codecs.ARROW_FILE)])
        return table if arrow else table.to_pandas()

    def experiment_summary(
        self, start: datetime | None = None, end: datetime | None = None
    ) -> dict[str, Any]:
        """Per model of a split or shadow: rows served, mean and p99 latency, check-failure
        rate, mean and spread of each numeric output; for challengers, how often and by how
        much they differ from the champion on the same rows."""
        params = {"start": start and start.isoformat(), "end": end and end.isoformat()}
        result: dict[str, Any] = self._session.json("GET", self._path("/experiment"), params=params)
        return result

    def export_logs(
        self,
        directory: str | Path = "logs",
        file_prefix: str | None = None,
        data_size_limit: str | int = "100MiB",
        arrow: bool = False,
        start_datetime: datetime | None = None,
        end_datetime: datetime | None = None,
        valid: bool | None = None,
        dataset: list[str] | None = None,
        dataset_exclude: list[str] | None = None,
        progress: bool = True,
    ) -> list[Path]:
        """Write every matching log row, oldest first, to JSON-lines (or Arrow IPC with
        arrow=True) files in `directory`, starting a new file at `data_size_limit`."""
        limit = parse_size(data_size_limit)
        params = self._log_params(start_datetime, end_datetime, valid, dataset, dataset_exclude)
        writer = _FileSplitter(Path(directory), file_prefix or self.name, limit, arrow)
        with (
            self._session.stream("GET", self._path("/logs/export"), params=params) as response,
            Progress(disable=not progress, transient=True) as bar,
        ):
            task = bar.add_task(
                f"exporting {self.name} logs",
                total=int(response.headers.get("x-total-rows", 0)) or None,
            )
            for batch in _frames(response.iter_bytes()):
                writer.write(batch)
                bar.advance(task, batch.num_rows)
        return writer.close()


def _frames(chunks: Any) -> Any:
    """Batches from the export stream: 8-byte length, then one Arrow IPC stream."""
    buffer = b""
    for chunk in chunks:
        buffer += chunk
        while len(buffer) >= 8:
            size = int.from_bytes(buffer[:8], "big")
            if len(buffer) < 8 + size:
                break
            yield codecs.decode(buffer[8 : 8 + size], codecs.ARROW_STREAM)
            buffer = buffer[8 + size :]


class _FileSplitter:
    """Writes batches into numbered files, each at most about `limit` bytes."""

    def __init__(self, directory: Path, prefix: str, limit: int, arrow: bool) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory, self.prefix, self.limit, self.arrow = directory, prefix, limit, arrow
        self.paths: list[Path] = []
        self._size = limit  # forces a first file
        self._file: Any = None
        self._writer: pa.ipc.RecordBatchStreamWriter | None = None
        self._schema: pa.Schema | None = None

    def _next_file(self, schema: pa.Schema) -> None:
        self._finish()
        path = (
            self.directory
            / f"{self.prefix}-{len(self.paths) + 1}.{'arrow' if self.arrow else 'jsonl'}"
        )
        self.paths.append(path)
        self._file = open(path, "wb")
        self._size = 0
        self._schema = schema
        if self.arrow:
            self._writer = pa.ipc.new_file(self._file, schema)

    def write(self, batch: pa.RecordBatch) -> None:
        # Split big batches so files stay near the limit.
        rows = max(1, int(self.limit / max(batch.nbytes / max(batch.num_rows, 1), 1)))
        for start in range(0, batch.num_rows, rows):
            part = batch.slice(start, rows)
            if self._size >= self.limit or (self.arrow and part.schema != self._schema):
                self._next_file(part.schema)
            if self.arrow:
                assert self._writer is not None
                self._writer.write_batch(part)
                self._size += part.nbytes
            else:
                text = "".join(
                    json.dumps(r, default=str) + "\n"
                    for r in json.loads(codecs.encode(part, codecs.PANDAS_RECORDS))
                )
                self._file.write(text.encode())
                self._size += len(text)

    def _finish(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._file is not None:
            self._file.close()
            self._file = None

    def close(self) -> list[Path]:
        self._finish()
        return self.paths
