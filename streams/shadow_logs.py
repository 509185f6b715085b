"""Shadow challengers' log rows: kept beside a pipeline's logs, joined on read.

A challenger answers after the champion, in another agent, so its rows are
stored apart (under `<pipeline>~shadow` in the same log store) and attached to
the champion's rows by (request id, row) when logs are read, as
`out_<challenger>.<field>` columns. A challenger that failed on a row shows
its error in `out_<challenger>.error`.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

SHADOW_SUFFIX = "~shadow"
SHADOW_MODEL = "metadata.shadow"
"""Which challenger a shadow row belongs to."""
SHADOW_ERROR = "metadata.error"


def shadow_pipeline(pipeline: str) -> str:
    """The log-store name under which a pipeline's challenger rows live."""
    return pipeline + SHADOW_SUFFIX


def _keys(table: pa.Table) -> pa.Array:
    return pc.binary_join_element_wise(table["request_id"], pc.cast(table["row"], pa.string()), ":")


def attach_shadows(primary: pa.Table, shadows: pa.Table) -> pa.Table:
    """`primary` with each challenger's `out_<model>.*` columns aligned to its rows (null where
    the challenger has no row)."""
    if shadows.num_rows == 0 or primary.num_rows == 0 or SHADOW_MODEL not in shadows.column_names:
        return primary
    keys = _keys(primary)
    for model in sorted(pc.unique(shadows[SHADOW_MODEL]).drop_null().to_pylist()):
        rows = shadows.filter(pc.equal(shadows[SHADOW_MODEL], model))
        rows = rows.take(pc.unique(pc.index_in(_keys(rows), _keys(rows))))  # first copy of each key
        where = pc.index_in(keys, value_set=_keys(rows))
        prefix = f"out_{model}."
        for name in rows.column_names:
            if name.startswith(prefix) and name not in primary.column_names:
                primary = primary.append_column(name, rows[name].take(where))
        if SHADOW_ERROR in rows.column_names:
            primary = primary.append_column(prefix + "error", rows[SHADOW_ERROR].take(where))
    return primary
