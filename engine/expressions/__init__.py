"""Validation expressions as data: a small tree of nodes, built by operators, stored as JSON,
parsed from text safely, evaluated with numpy.

An expression states the VALID condition; rows where it is False fail the check::

    inputs, outputs = model_refs("anomaly-housing")
    expr = outputs[0][0] < 100.0      # to_text(expr) == "anomaly-housing.outputs[0][0] < 100.0"
    ok = check(expr, {"anomaly-housing": {"inputs": {...}, "outputs": {"dense_1": arr}}})

One module per concept: `nodes` (the tree and its operators), `refs` (where a tree
starts), `json_form`, `text` (the printer), `parser` (never eval), `evaluate`.
Callers use the names below, which this package gathers in one place.
"""

from engine.expressions.evaluate import Tensors, check, evaluate, models_referenced
from engine.expressions.json_form import from_json
from engine.expressions.nodes import (
    MAX_DEPTH,
    MODEL_NAME,
    BinaryOp,
    Expression,
    Function,
    Literal,
    UnaryOp,
    Variable,
)
from engine.expressions.parser import MAX_TEXT, parse
from engine.expressions.refs import FieldRefs, TensorRefs, model_refs
from engine.expressions.text import to_text

__all__ = [
    "MAX_DEPTH",
    "MAX_TEXT",
    "MODEL_NAME",
    "BinaryOp",
    "Expression",
    "FieldRefs",
    "Function",
    "Literal",
    "TensorRefs",
    "Tensors",
    "UnaryOp",
    "Variable",
    "check",
    "evaluate",
    "from_json",
    "model_refs",
    "models_referenced",
    "parse",
    "to_text",
]
