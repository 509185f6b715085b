"""Tests for engine.expressions' nodes and builder: every operator built, printed, parsed and
evaluated, and the builder refusing what an expression cannot say."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from engine.errors import ExpressionError
from engine.expressions import (
    BinaryOp,
    Expression,
    FieldRefs,
    Literal,
    TensorRefs,
    UnaryOp,
    Variable,
    check,
    evaluate,
    model_refs,
    models_referenced,
    parse,
    to_text,
)
from tests.engine._expressions import A, B, FLAG, HOUSING, h_in, h_out, m_out, tensors


def test_housing_guide_example_flags_high_price() -> None:
    validation = h_out[0][0] < 100.0
    batch = {
        HOUSING: {
            "inputs": {"dense_16_input": np.zeros((2, 13))},
            "outputs": {"dense_1": np.array([[350.46990966796875], [50.0]], dtype=np.float32)},
        }
    }
    assert to_text(validation) == "anomaly-housing.outputs[0][0] < 100.0"
    assert check(validation, batch).tolist() == [False, True]
    assert check(parse("anomaly-housing.outputs[0][0] < 100.0"), batch).tolist() == [False, True]
    assert check(h_out["dense_1"][0] < 100.0, batch).tolist() == [False, True]


def test_builder_produces_variables() -> None:
    assert h_out[0].to_json() == {
        "type": "variable",
        "model": HOUSING,
        "kind": "outputs",
        "field": 0,
        "index": [],
    }
    assert h_out["dense_1"][0].same_as(Variable(HOUSING, "outputs", "dense_1", (0,)))
    assert h_in[1][2][3].same_as(Variable(HOUSING, "inputs", 1, (2, 3)))
    assert m_out[np.int64(1)][np.int32(2)].same_as(Variable("m", "outputs", 1, (2,)))
    refs = model_refs("m")
    assert isinstance(refs, TensorRefs) and refs.outputs == FieldRefs("m", "outputs")


def test_nodes_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        A.model = "other"  # type: ignore[misc]


OPERATORS = [
    ("lt", lambda: A < 2, "m.outputs[0][0] < 2", [True, False, False]),
    ("le", lambda: A <= 2, "m.outputs[0][0] <= 2", [True, True, False]),
    ("gt", lambda: A > 2, "m.outputs[0][0] > 2", [False, False, True]),
    ("ge", lambda: A >= 2, "m.outputs[0][0] >= 2", [False, True, True]),
    ("eq", lambda: A == B, "m.outputs[0][0] == m.outputs[0][1]", [False, True, False]),
    ("ne", lambda: A != B, "m.outputs[0][0] != m.outputs[0][1]", [True, False, True]),
    ("reflected_gt", lambda: 2.5 > A, "m.outputs[0][0] < 2.5", [True, True, False]),
    ("add", lambda: A + B, "m.outputs[0][0] + m.outputs[0][1]", [4.0, 4.0, 4.0]),
    ("radd", lambda: 1 + A, "1 + m.outputs[0][0]", [2.0, 3.0, 4.0]),
    ("sub", lambda: A - 1, "m.outputs[0][0] - 1", [0.0, 1.0, 2.0]),
    ("rsub", lambda: 100 - A, "100 - m.outputs[0][0]", [99.0, 98.0, 97.0]),
    ("mul", lambda: A * 2, "m.outputs[0][0] * 2", [2.0, 4.0, 6.0]),
    ("rmul", lambda: 3 * A, "3 * m.outputs[0][0]", [3.0, 6.0, 9.0]),
    ("div", lambda: A / 2, "m.outputs[0][0] / 2", [0.5, 1.0, 1.5]),
    ("rdiv", lambda: 6 / A, "6 / m.outputs[0][0]", [6.0, 3.0, 2.0]),
    ("neg", lambda: -A, "-m.outputs[0][0]", [-1.0, -2.0, -3.0]),
    ("abs", lambda: abs(A - 2), "abs(m.outputs[0][0] - 2)", [1.0, 0.0, 1.0]),
    (
        "and",
        lambda: (A > 1) & FLAG,
        '(m.outputs[0][0] > 1) & m.outputs["flag"]',
        [False, False, True],
    ),
    (
        "or",
        lambda: (A > 2) | ~FLAG,
        '(m.outputs[0][0] > 2) | ~m.outputs["flag"]',
        [False, True, True],
    ),
    ("rand", lambda: True & FLAG, 'True & m.outputs["flag"]', [True, False, True]),
    ("ror", lambda: False | FLAG, 'False | m.outputs["flag"]', [True, False, True]),
    ("not", lambda: ~(A < 2), "~(m.outputs[0][0] < 2)", [False, True, True]),
    ("one_of", lambda: A.one_of(1, 3), "m.outputs[0][0].one_of(1, 3)", [True, False, True]),
    (
        "one_of_str",
        lambda: m_out["label"].one_of("cat", "cow"),
        'm.outputs["label"].one_of("cat", "cow")',
        [True, False, True],
    ),
    (
        "precedence",
        lambda: (A - (B - 1)) * 2,
        "(m.outputs[0][0] - (m.outputs[0][1] - 1)) * 2",
        [-2.0, 2.0, 6.0],
    ),
    (
        "seq_tensor",
        lambda: model_refs("n-2")[1][0] >= -20,
        "n-2.outputs[0] >= -20",
        [True, True, True],
    ),
    (
        "mixed",
        lambda: abs(-A + 1) / 2 <= 0.5,
        "abs(-m.outputs[0][0] + 1) / 2 <= 0.5",
        [True, True, False],
    ),
]


@pytest.mark.parametrize(
    "build, text, expected", [o[1:] for o in OPERATORS], ids=[o[0] for o in OPERATORS]
)
def test_operator(build, text: str, expected: list) -> None:
    expr = build()
    assert isinstance(expr, Expression)
    assert to_text(expr) == text
    assert parse(text).same_as(expr)
    assert evaluate(expr, tensors()).tolist() == expected


def test_negating_a_number_literal_folds() -> None:
    assert (-Literal(5)).same_as(Literal(-5))
    assert (A > -5).right.same_as(Literal(-5))  # type: ignore[attr-defined]
    assert parse("m.outputs[0][0] > -5").same_as(A > -5)
    with pytest.raises(ExpressionError, match="negate a literal"):
        UnaryOp("neg", Literal(5))


def test_numpy_scalars_on_the_left_build_nodes() -> None:
    expr = np.float64(2.5) > A
    assert isinstance(expr, BinaryOp) and expr.same_as(A < 2.5)
    assert (np.int64(3) * A).same_as(3 * A)


def test_bool_of_expression_raises() -> None:
    with pytest.raises(ExpressionError, match="use & | ~ instead of and/or/not"):
        bool(A < 1)
    with pytest.raises(ExpressionError):
        _ = 0 < A < 2  # chained comparison calls bool() on the first result
    with pytest.raises(ExpressionError):
        _ = (A < 1) and (B > 2)
    with pytest.raises(ExpressionError):
        _ = not (A < 1)
    with pytest.raises(ExpressionError):
        _ = A in [B]


def test_equality_builds_nodes_and_hash_is_identity() -> None:
    assert isinstance(A == B, BinaryOp)
    e1, e2 = A < 1, A < 1
    assert e1.same_as(e2) and not e1.same_as(A < 2) and not e1.same_as("A < 1")
    assert len({e1, e2, e1}) == 2
    assert {e1: "x"}[e1] == "x"


@pytest.mark.parametrize(
    "build, words",
    [
        (lambda: m_out[1.5], "needs an int position or a field name, found 1.5"),
        (lambda: m_out[-1], "needs an int position or a field name, found -1"),
        (lambda: m_out[None], "found None"),
        (lambda: m_out[0]["x"], "needs a non-negative int index, found str 'x'"),
        (lambda: m_out[0][True], "found bool True"),
        (lambda: m_out[0][-2], "found int -2"),
        (lambda: A < None, "cannot use NoneType None in an expression"),
        (lambda: A + [1], "cannot use list"),
        (lambda: A < float("nan"), "finite"),
        (lambda: A.one_of(), "at least one value"),
        (lambda: A.one_of(B), "cannot use Variable"),
        (lambda: list(m_out), "cannot be iterated"),
        (lambda: list(A), "cannot be iterated"),
        (lambda: model_refs("Housing_Model"), "model name must match"),
        (lambda: -Literal("x"), "negate a literal"),
        (lambda: A < 10**400, "fit in 1000 bits"),
    ],
)
def test_builder_rejects(build, words: str) -> None:
    with pytest.raises(ExpressionError) as info:
        build()
    assert words in str(info.value)


def test_models_referenced() -> None:
    expr = (h_out[0][0] < 1) | ~(model_refs("b-2")[0]["x"][0] > A) & abs(A).one_of(1)
    assert models_referenced(expr) == {HOUSING, "b-2", "m"}
    assert models_referenced(Literal(True)) == set()
    assert models_referenced(parse("7.inputs[0][0] - a-b.outputs[0][0] > 2")) == {"7", "a-b"}
