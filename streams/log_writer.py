"""Writing log rows into the log store: each pipeline's as its log policy keeps them.

The policy is read (from the registry) at each write; while it cannot be read (Redis away),
the last one read serves, else the default one (which bounds rows' size too), so logging goes
on. Rows whose columns clash with what the store holds for their pipeline keep only the
required columns (and the error), rather than being lost.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

import pyarrow as pa

from engine.columns import META_ERROR
from streams.log_policy import LogPolicy
from streams.log_schema import REQUIRED_SCHEMA, LogSchemaError
from streams.logstore import LogStore
from streams.outage import Outage

log = logging.getLogger(__name__)

Policies = Callable[[str, str], LogPolicy]
"""The log policy of a (workspace, pipeline); it may raise (Redis away)."""
_KEPT = (*REQUIRED_SCHEMA.names, META_ERROR)


class LogWriter:
    """Appends log rows to a LogStore as each pipeline's log policy keeps them."""

    def __init__(self, store: LogStore, policies: Policies | None = None) -> None:
        self.store = store
        self.policies = policies or (lambda workspace, pipeline: LogPolicy())
        self._known: dict[tuple[str, str], LogPolicy] = {}
        self._failing = Outage(log, "reading log policies")

    def write(self, batches: dict[tuple[str, str], list[pa.RecordBatch]]) -> None:
        """Store each (workspace, pipeline)'s rows, as its policy keeps them."""
        for (workspace, pipeline), rows in batches.items():
            if rows:  # none: every result read for the pipeline was unreadable (logged)
                self._append(workspace, pipeline, self.kept(workspace, pipeline, rows))

    def kept(
        self, workspace: str, pipeline: str, batches: list[pa.RecordBatch]
    ) -> list[pa.RecordBatch]:
        """The rows as the pipeline's log policy keeps them (streams.log_policy)."""
        policy = self._policy(workspace, pipeline)
        return [policy.apply(batch) for batch in batches]

    def learn(self, pipelines: Iterable[tuple[str, str]]) -> None:
        """Read the policies of `pipelines` (workspace, pipeline), so that each is known should
        the registry be away when their first rows are written."""
        for workspace, pipeline in sorted(set(pipelines)):
            self._policy(workspace, pipeline)

    def _policy(self, workspace: str, pipeline: str) -> LogPolicy:
        """The pipeline's log policy, else (it cannot be read now) the last one read, else the
        default one (which bounds rows' size too): logging goes on meanwhile."""
        key = (workspace, pipeline)
        try:
            policy = self.policies(workspace, pipeline)
        except Exception as exc:
            self._failing.failed(exc)
            return self._known.get(key) or LogPolicy()
        self._failing.ok()
        self._known[key] = policy
        return policy

    def _append(self, workspace: str, pipeline: str, batches: list[pa.RecordBatch]) -> None:
        """Store the rows; rows whose columns clash with the store keep only the required ones."""
        try:
            table = (
                pa.Table.from_batches(batches)
                if _same_schema(batches)
                else pa.concat_tables(
                    [pa.Table.from_batches([b]) for b in batches], promote_options="permissive"
                )
            )
            self.store.append(workspace, pipeline, table)
            return
        except (LogSchemaError, pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            if len(batches) > 1:  # find the rows at fault: store the others whole
                for batch in batches:
                    self._append(workspace, pipeline, [batch])
                return
            log.error(
                "log rows of %s/%s clash with the store (%s); keeping only %s",
                workspace,
                pipeline,
                exc,
                ", ".join(_KEPT),
            )
        batch = batches[0]
        kept = [n for n in _KEPT if n in batch.schema.names]
        try:
            self.store.append(workspace, pipeline, batch.select(kept))
        except LogSchemaError as exc:
            log.error("dropping log rows of %s/%s: %s", workspace, pipeline, exc)


def _same_schema(batches: list[pa.RecordBatch]) -> bool:
    first = batches[0].schema
    return all(b.schema.equals(first) for b in batches[1:])
