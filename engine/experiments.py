"""Comparing the models of an experiment from its log rows (splits and shadows).

`experiment_summary` takes the champion-path log rows of a pipeline and its
challengers' shadow rows and says, per model: rows served, latency, check
failure rate and the mean and spread of each numeric output; and per
challenger, how often and by how much its outputs differ from the champion's
on the same rows.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine import codecs
from engine.columns import (
    ANOMALY_COUNT,
    META_ELAPSED,
    META_ERROR,
    META_MODEL,
    META_SHADOW,
    OUT_MODEL_SPLIT,
    OUT_PREFIX,
    SHADOW_ERROR_FIELD,
    shadow_out_prefix,
)
from engine.errors import CodecError


def _numeric(column: pa.ChunkedArray | pa.Array) -> np.ndarray | None:
    """A column as a 2-D float array (rows x values), or None if it is not numeric."""
    try:
        array = codecs.column_to_ndarray(column)
    except CodecError:
        return None
    if array.dtype.kind not in "fiub" or not len(array):
        return None
    return array.reshape(len(array), -1).astype(np.float64)


def _outputs(table: pa.Table, prefix: str) -> dict[str, dict[str, float]]:
    stats = {}
    for name in table.column_names:
        if not name.startswith(prefix) or name == OUT_MODEL_SPLIT:
            continue
        values = _numeric(table[name].drop_null())
        if values is not None and values.size:
            stats[name[len(prefix) :]] = {"mean": float(values.mean()), "std": float(values.std())}
    return stats


def _latency_ms(table: pa.Table) -> dict[str, float | None]:
    if META_ELAPSED not in table.column_names or table.num_rows == 0:
        return {"mean": None, "p99": None}
    ms = table[META_ELAPSED].to_numpy().astype(np.float64) / 1e6
    return {"mean": float(ms.mean()), "p99": float(np.percentile(ms, 99))}


def _model_of_row(table: pa.Table) -> list[str]:
    if OUT_MODEL_SPLIT in table.column_names:
        return [
            json.loads(s)[-1]["name"] if s else "unknown"
            for s in table[OUT_MODEL_SPLIT].to_pylist()
        ]
    return [m.split("@")[0] for m in table[META_MODEL].to_pylist()]


def _per_model(table: pa.Table) -> dict[str, Any]:
    models = _model_of_row(table)
    result = {}
    for model in sorted(set(models)):
        rows = table.filter(pa.array([m == model for m in models]))
        failed = rows[ANOMALY_COUNT].to_numpy() > 0 if ANOMALY_COUNT in rows.column_names else []
        result[model] = {
            "rows": rows.num_rows,
            "share": rows.num_rows / table.num_rows,
            "latency_ms": _latency_ms(rows),
            "check_failure_rate": float(np.mean(failed)) if len(failed) else 0.0,
            "outputs": _outputs(rows, OUT_PREFIX),
        }
    return result


def _versus(primary: pa.Table, model: str) -> dict[str, dict[str, float]]:
    """How a challenger's outputs differ from the champion's on the rows both answered."""
    out = {}
    prefix = shadow_out_prefix(model)
    for name in primary.column_names:
        if not name.startswith(prefix) or name == prefix + SHADOW_ERROR_FIELD:
            continue
        field = name[len(prefix) :]
        if OUT_PREFIX + field not in primary.column_names:
            continue
        both = primary.filter(
            pc.and_(pc.is_valid(primary[name]), pc.is_valid(primary[OUT_PREFIX + field]))
        )
        ours, theirs = _numeric(both[OUT_PREFIX + field]), _numeric(both[name])
        if ours is None or theirs is None or ours.shape != theirs.shape or not len(ours):
            continue
        diff = np.abs(theirs - ours).max(axis=1)
        out[field] = {
            "compared": int(len(diff)),
            "differ_rate": float(np.mean(diff > 1e-6 * np.maximum(1, np.abs(ours).max(axis=1)))),
            "mean_abs_diff": float(diff.mean()),
            "max_abs_diff": float(diff.max()),
        }
    return out


def experiment_summary(primary: pa.Table, shadows: pa.Table | None = None) -> dict[str, Any]:
    """Per-model figures of a pipeline's experiment. `primary` holds the champion-path rows
    with challengers attached (streams.shadow_logs.attach_shadows); `shadows` the raw
    challenger rows (for their latency and errors)."""
    summary: dict[str, Any] = {"rows": primary.num_rows, "models": {}, "shadows": {}}
    if primary.num_rows:
        summary["models"] = _per_model(primary)
    if shadows is None or shadows.num_rows == 0 or META_SHADOW not in shadows.column_names:
        return summary
    for model in sorted(pc.unique(shadows[META_SHADOW]).drop_null().to_pylist()):
        rows = shadows.filter(pc.equal(shadows[META_SHADOW], model))
        errors = rows[META_ERROR] if META_ERROR in rows.column_names else None
        summary["shadows"][model] = {
            "rows": rows.num_rows,
            "errors": int(pc.sum(pc.is_valid(errors)).as_py() or 0) if errors is not None else 0,
            "latency_ms": _latency_ms(rows),
            "outputs": _outputs(rows, shadow_out_prefix(model)),
            "vs_champion": _versus(primary, model),
        }
    return summary
