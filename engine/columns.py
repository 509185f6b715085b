"""The column names of result and log rows: the one vocabulary every layer imports.

A result row holds `time`, the inputs it answered (`in.<field>`), the champion's outputs
(`out.<field>`; `out._model_split` where a split chose the model), each shadow
challenger's (`out_<model>.<field>`), `check_failures`, `anomaly.<check>` and
`anomaly.count`, and `metadata.*`. In the log store a row also has the
(`request_id`, `row`) that identify it.
"""

from __future__ import annotations

import pyarrow as pa

TIME = "time"
TIME_TYPE = pa.timestamp("ms", tz="UTC")
IN_PREFIX = "in."
OUT_PREFIX = "out."
OUT_MODEL_SPLIT = "out._model_split"
"""A JSON list of the {name, version, sha} a split chose for the row."""
SHADOW_OUT_PREFIX = "out_"
SHADOW_ERROR_FIELD = "error"
"""`out_<model>.error`: why challenger `model` did not answer a champion row."""
CHECK_FAILURES = "check_failures"
ANOMALY_PREFIX = "anomaly."
ANOMALY_COUNT = "anomaly.count"
META_VERSION = "metadata.pipeline_version"
META_MODEL = "metadata.model"
META_ELAPSED = "metadata.elapsed_ns"
META_ROW = "metadata.row"
"""Each result row's index in its request (a split can answer a request in several parts)."""
META_SHADOW = "metadata.shadow"
"""On a challenger's log rows: which challenger answered."""
META_ERROR = "metadata.error"
META_TRACEPARENT = "metadata.traceparent"
"""The W3C traceparent its request came with (streams.trace), where it had one."""
META_DROPPED = "metadata.dropped"
"""The inputs a log row left out for its size (streams.log_policy)."""
REQUEST_ID = "request_id"
ROW = "row"
"""With REQUEST_ID, what identifies a row in the log store."""

GROUPS = ("time", "in", "out", "check_failures", "anomaly", "metadata")
"""The groups of columns `logs(dataset=...)` picks from."""


def shadow_out_prefix(model: str) -> str:
    """The prefix of shadow challenger `model`'s outputs: `out_<model>.`."""
    return f"{SHADOW_OUT_PREFIX}{model}."


def group(column: str) -> str:
    """The group of GROUPS a column belongs to; a shadow output's is `out`, the log
    store's keys' `metadata`."""
    if column in (TIME, CHECK_FAILURES):
        return column
    if column in (REQUEST_ID, ROW):
        return "metadata"
    head = column.split(".", 1)[0]
    return "out" if head.startswith(SHADOW_OUT_PREFIX) else head
