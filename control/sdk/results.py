"""`InferenceResult`: the guide's dict form of an answer, for `pipeline.infer(dict)`."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa

from engine import codecs, expressions
from engine.columns import (
    ANOMALY_PREFIX,
    IN_PREFIX,
    META_ELAPSED,
    OUT_MODEL_SPLIT,
    OUT_PREFIX,
    SHADOW_ERROR_FIELD,
    SHADOW_OUT_PREFIX,
    TIME,
)
from engine.errors import CodecError

_TYPE_NAMES = {"f": "Float", "i": "Int", "u": "Int", "b": "Bool"}


def _tensor(column: pa.Array | pa.ChunkedArray) -> dict[str, Any]:
    """One output in the guide's form: {'Float': {'data': [...], 'dim': [n, k], 'v': 1}}."""
    try:
        array = codecs.column_to_ndarray(column)
        kind = _TYPE_NAMES.get(array.dtype.kind, "String")
    except CodecError:
        array, kind = np.array(column.to_pylist(), dtype=object), "String"
    if array.ndim == 1:
        array = array.reshape(-1, 1)
    return {kind: {"data": array.reshape(-1).tolist(), "dim": list(array.shape), "v": 1}}


class InferenceResult(dict[str, Any]):
    """One request's answer as the guide shows it, with `.data()` and `.model()`."""

    def data(self) -> list[np.ndarray]:
        """The champion's outputs as arrays (rows first)."""
        return [
            np.asarray(next(iter(o.values()))["data"]).reshape(next(iter(o.values()))["dim"])
            for o in self["outputs"]
        ]

    def model(self) -> tuple[str, str]:
        """(name, version) of the model that answered (the first row's, under a split)."""
        return self["model_name"], self["model_version"]


def to_inference_result(
    table: pa.Table,
    pipeline: str,
    validations: dict[str, expressions.Expression],
    default_model: tuple[str, str],
) -> InferenceResult:
    names = table.column_names
    failures = []
    for name, expr in validations.items():
        column = ANOMALY_PREFIX + name
        if column in names:
            rows = [i for i, failed in enumerate(table[column].to_pylist()) if failed]
            if rows:
                failures.append({"False": {"expr": expressions.to_text(expr), "rows": rows}})
    model = default_model
    if OUT_MODEL_SPLIT in names and table.num_rows:
        first = json.loads(table[OUT_MODEL_SPLIT][0].as_py())[-1]
        model = (first["name"], first["version"])
    shadow: dict[str, list[dict[str, Any]]] = {}
    for name in names:
        if (
            name.startswith(SHADOW_OUT_PREFIX)
            and "." in name
            and not name.endswith("." + SHADOW_ERROR_FIELD)
        ):
            challenger = name[len(SHADOW_OUT_PREFIX) :].split(".", 1)[0]
            shadow.setdefault(challenger, []).append(_tensor(table[name]))
    return InferenceResult(
        check_failures=failures,
        elapsed=int(table[META_ELAPSED][0].as_py()) if table.num_rows else 0,
        model_name=model[0],
        model_version=model[1],
        original_data={
            n[len(IN_PREFIX) :]: table[n].to_pylist() for n in names if n.startswith(IN_PREFIX)
        },
        outputs=[
            _tensor(table[n]) for n in names if n.startswith(OUT_PREFIX) and n != OUT_MODEL_SPLIT
        ],
        pipeline_name=pipeline,
        shadow_data=shadow,
        time=int(table[TIME][0].value) if table.num_rows else 0,
    )
