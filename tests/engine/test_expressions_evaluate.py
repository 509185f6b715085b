"""Tests for engine.expressions' evaluator: clear errors, one bool per row from check, silent
division by zero and NaN, and vectorised evaluation."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from engine.errors import ExpressionError
from engine.expressions import Expression, Literal, check, evaluate, model_refs
from tests.engine._expressions import A, FLAG, m_in, m_out, tensors


@pytest.mark.parametrize(
    "expr, words",
    [
        (
            model_refs("ghost")[1][0][0] < 1,
            "ghost.outputs[0][0]: model 'ghost' is not in this batch; available models: 'm', 'n-2'",
        ),
        (
            m_out["nope"][0] < 1,
            "has no outputs field 'nope'; available: 0: 'pair', 1: 'flag', 2: 'label'",
        ),
        (m_out[7][0] < 1, "has no outputs field 7"),
        (
            m_in[0][0][0] < 1,
            "m.inputs[0][0][0]: tensor of shape (3, 1) (rows first) has 1 per-row dimension(s), "
            "cannot apply 2",
        ),
        (
            m_out["flag"][0],
            'm.outputs["flag"][0]: tensor of shape (3,) (rows first) has 0 per-row dimension(s)',
        ),
        (
            m_out[0][2] < 1,
            "index 2 is out of range for per-row dimension 0 of size 2 (shape (3, 2))",
        ),
        (model_refs("n-2")[1]["x"] < 1, "its outputs are 1 unnamed tensors, use a position"),
        ((A + 1) & FLAG, "needs true/false (compare first"),
        (~A, "needs true/false"),
        (FLAG + 1, "needs numeric operands, found bool"),
        (-m_out["label"], "needs numeric operands"),
        (m_out["label"] < 1, 'cannot evaluate m.outputs["label"] < 1'),
        (A.one_of("x"), "cannot evaluate"),
    ],
)
def test_evaluation_errors_are_clear(expr: Expression, words: str) -> None:
    with pytest.raises(ExpressionError) as info:
        check(expr, tensors())
    assert words in str(info.value)


@pytest.mark.parametrize(
    "expr, shape",
    [
        (A + 1, "float64 of shape (3,)"),
        (m_out[0] < 1, "bool of shape (3, 2)"),
        (Literal(True), "bool of shape ()"),
    ],
)
def test_check_requires_one_bool_per_row(expr: Expression, shape: str) -> None:
    assert evaluate(expr, tensors()) is not None
    with pytest.raises(ExpressionError, match="one true/false value per row") as info:
        check(expr, tensors())
    assert shape in str(info.value)


def test_division_by_zero_and_nan_are_silent_and_fail_comparisons() -> None:
    batch = {"m": {"outputs": {"v": np.array([[1.0], [0.0], [-1.0], [np.nan]])}}}
    v = model_refs("m")[1][0][0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ratio = evaluate(v / 0, batch)
        below = check(v / 0 < 1e308, batch)
        equal = check(v == v, batch)
    assert ratio[0] == np.inf and np.isnan(ratio[1]) and ratio[2] == -np.inf and np.isnan(ratio[3])
    assert below.tolist() == [False, False, True, False]
    assert equal.tolist() == [True, True, True, False]


def test_evaluation_is_vectorised_over_many_rows() -> None:
    n = 200_000
    values = np.arange(n, dtype=np.float64).reshape(n, 1)
    y = model_refs("m")[1][0][0]
    result = check((y >= 10) & (y < 20), {"m": {"outputs": {"y": values}}})
    assert result.shape == (n,) and int(result.sum()) == 10
