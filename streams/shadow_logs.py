"""Shadow challengers' log rows: kept beside a pipeline's logs, joined on read.

A challenger answers after the champion, in another worker, so its rows are
stored apart (under `<pipeline>~shadow~<challenger>` in the same log store:
one store per challenger, as the store keeps one row per (request id, row))
and attached to the champion's rows by (request id, row) when logs are read,
as `out_<challenger>.<field>` columns. A challenger that failed on a row shows
its error in `out_<challenger>.error`.
"""

from __future__ import annotations

from datetime import datetime

import pyarrow as pa
import pyarrow.compute as pc

from engine.columns import (
    META_ERROR,
    META_SHADOW,
    REQUEST_ID,
    ROW,
    SHADOW_ERROR_FIELD,
    shadow_out_prefix,
)
from streams.logstore import LogStore

SHADOW_INFIX = "~shadow~"


def shadow_pipeline(pipeline: str, challenger: str) -> str:
    """The log-store name under which one challenger's rows of a pipeline live."""
    return pipeline + SHADOW_INFIX + challenger


def shadow_stores(store: LogStore, workspace: str, pipeline: str) -> list[str]:
    """The log-store names holding a pipeline's challengers' rows."""
    prefix = pipeline + SHADOW_INFIX
    return [name for ws, name in store.pipelines() if ws == workspace and name.startswith(prefix)]


def read_shadows(
    store: LogStore,
    workspace: str,
    pipeline: str,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
) -> pa.Table:
    """Every challenger's rows of a pipeline (in `[start, end)` when given), in one table."""
    tables = [
        store.query(workspace, name, limit=None, start=start, end=end)
        for name in shadow_stores(store, workspace, pipeline)
    ]
    if not tables:
        return pa.table({})
    return pa.concat_tables(tables, promote_options="permissive")


def _keys(table: pa.Table) -> pa.Array:
    return pc.binary_join_element_wise(table[REQUEST_ID], pc.cast(table[ROW], pa.string()), ":")


def attach_shadows(primary: pa.Table, shadows: pa.Table) -> pa.Table:
    """`primary` with each challenger's `out_<model>.*` columns aligned to its rows (null where
    the challenger has no row)."""
    if shadows.num_rows == 0 or primary.num_rows == 0 or META_SHADOW not in shadows.column_names:
        return primary
    keys = _keys(primary)
    for model in sorted(pc.unique(shadows[META_SHADOW]).drop_null().to_pylist()):
        rows = shadows.filter(pc.equal(shadows[META_SHADOW], model))
        rows = rows.take(pc.unique(pc.index_in(_keys(rows), _keys(rows))))  # first copy of each key
        where = pc.index_in(keys, value_set=_keys(rows))
        prefix = shadow_out_prefix(model)
        for name in rows.column_names:
            if name.startswith(prefix) and name not in primary.column_names:
                primary = primary.append_column(name, rows[name].take(where))
        if META_ERROR in rows.column_names:
            primary = primary.append_column(
                prefix + SHADOW_ERROR_FIELD, rows[META_ERROR].take(where)
            )
    return primary
