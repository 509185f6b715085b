"""Evaluating an expression over a batch's tensors, vectorised with numpy.

Tensors come as `{model: {"inputs": {field: array}, "outputs": {...}}}` with rows
first. Only the whitelisted numpy functions below ever run; operand kinds are
checked first, so `&` of numbers or `+` of strings fails with a message.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import reduce
from typing import Any

import numpy as np

from engine.expressions.nodes import (
    ARITHMETIC,
    LOGIC,
    Expression,
    Function,
    Literal,
    Variable,
    children,
    fail,
    require,
)
from engine.expressions.text import to_text

Tensors = Mapping[str, Mapping[str, "Sequence[np.ndarray] | Mapping[str, np.ndarray]"]]

_FUNCTIONS = {
    "<": np.less,
    "<=": np.less_equal,
    ">": np.greater,
    ">=": np.greater_equal,
    "==": np.equal,
    "!=": np.not_equal,
    "+": np.add,
    "-": np.subtract,
    "*": np.multiply,
    "/": np.true_divide,
    "&": np.logical_and,
    "|": np.logical_or,
    "neg": np.negative,
    "not": np.logical_not,
    "abs": np.abs,
}
_OPERAND_KINDS = {
    **dict.fromkeys((*LOGIC, "not"), ("b", "true/false (compare first: (x < 1) & (y > 2))")),
    **dict.fromkeys((*ARITHMETIC, "neg", "abs"), ("iuf", "numeric")),
}
"""numpy dtype kinds each operation takes, and how to name them in a message."""


def evaluate(expr: Expression, tensors: Tensors) -> np.ndarray:
    """Evaluate over `{model: {"inputs": {field: arr}, "outputs": {...}}}` (rows first).

    Fields are dicts in model order (an int field picks the i-th, a str field by name) or
    plain sequences. Division by zero gives inf/nan silently; ordered comparisons and ==
    with nan are False (!= is True).
    """
    with np.errstate(all="ignore"):
        return np.asarray(_evaluate(expr, tensors))


def check(expr: Expression, tensors: Tensors) -> np.ndarray:
    """Evaluate a validation: one bool per row, True where the row is valid, else
    ExpressionError."""
    result = evaluate(expr, tensors)
    require(
        result.ndim == 1 and result.dtype == np.bool_,
        f"validation {to_text(expr)!r} must give one true/false value per row, but gives "
        f"{result.dtype} of shape {result.shape}; compare one value per row, e.g. "
        "m.outputs[0][0] < 100.0",
    )
    return result


def models_referenced(expr: Expression) -> set[str]:
    """Names of every model the expression reads (deploy rejects ones not in the pipeline)."""
    if isinstance(expr, Variable):
        return {expr.model}
    return set().union(*map(models_referenced, children(expr)))


def _evaluate(expr: Expression, tensors: Tensors) -> Any:
    if isinstance(expr, Variable):
        return _lookup(expr, tensors)
    if isinstance(expr, Literal):
        return expr.value
    args = [_evaluate(child, tensors) for child in children(expr)]
    key = expr.name if isinstance(expr, Function) else expr.op  # type: ignore[attr-defined]
    kinds, what = _OPERAND_KINDS.get(key, ("", ""))
    for arg in args if kinds else ():
        dtype = np.asarray(arg).dtype
        require(dtype.kind in kinds, f"{to_text(expr)}: needs {what} operands, found {dtype}")
    try:
        if key == "one_of":
            return reduce(np.logical_or, (np.equal(args[0], value) for value in args[1:]))
        return _FUNCTIONS[key](*args)
    except (TypeError, ValueError, OverflowError) as exc:
        fail(f"cannot evaluate {to_text(expr)}: {exc}")


def _lookup(var: Variable, tensors: Tensors) -> np.ndarray:
    """The values of `var` in each row, or ExpressionError naming what the batch has."""
    name = to_text(var)
    require(
        var.model in tensors,
        f"{name}: model {var.model!r} is not in this batch; "
        f"available models: {', '.join(map(repr, tensors)) or 'none'}",
    )
    group = tensors[var.model].get(var.kind, {})
    if isinstance(group, Mapping):
        names = list(group)
        in_range = isinstance(var.field, int) and var.field < len(names)
        key = names[var.field] if in_range else var.field  # type: ignore[index]
        available = ", ".join(f"{i}: {field!r}" for i, field in enumerate(names)) or "none"
        require(
            isinstance(key, str) and key in group,
            f"{name}: model {var.model!r} has no "
            f"{var.kind} field {var.field!r}; available: {available}",
        )
        array = np.asarray(group[key])  # type: ignore[index]  # a str: required above
    else:
        require(
            isinstance(group, Sequence)
            and not isinstance(group, str)
            and isinstance(var.field, int)
            and var.field < len(group),
            f"{name}: model {var.model!r} has no {var.kind} field {var.field!r}; its "
            f"{var.kind} are {len(group)} unnamed tensors, use a position",
        )
        array = np.asarray(group[var.field])  # type: ignore[index]
    require(
        array.ndim >= 1 + len(var.index),
        f"{name}: tensor of shape {array.shape} (rows "
        f"first) has {max(array.ndim - 1, 0)} per-row dimension(s), cannot apply "
        f"{len(var.index)} index(es)",
    )
    for dimension, (position, size) in enumerate(zip(var.index, array.shape[1:])):
        require(
            position < size,
            f"{name}: index {position} is out of range for per-row "
            f"dimension {dimension} of size {size} (shape {array.shape})",
        )
    rows_then_index: tuple[slice | int, ...] = (slice(None), *var.index)
    return array[rows_then_index]
