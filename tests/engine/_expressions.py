"""What the engine.expressions tests share: references to two models, tensors to evaluate over,
and a corpus of expressions that covers every node and operator."""

from __future__ import annotations

import json

import numpy as np

from engine.errors import ExpressionError
from engine.expressions import Expression, Function, Literal, model_refs

HOUSING = "anomaly-housing"
h_in, h_out = model_refs(HOUSING)
m_in, m_out = model_refs("m")
A = m_out[0][0]  # values 1, 2, 3
B = m_out[0][1]  # values 3, 2, 1
FLAG = m_out["flag"]  # True, False, True


def tensors() -> dict:
    """Tensors of models 'm' and 'n-2' (three rows) as the evaluator takes them."""
    return {
        "m": {
            "inputs": {"x": np.array([[0.5], [1.5], [2.5]])},
            "outputs": {
                "pair": np.array([[1.0, 3.0], [2.0, 2.0], [3.0, 1.0]]),
                "flag": np.array([True, False, True]),
                "label": np.array(["cat", "dog", "cow"]),
            },
        },
        "n-2": {"inputs": {}, "outputs": [np.array([10, 20, 30])]},
    }


def canon(e: Expression) -> str:
    """An expression's JSON form as one comparable string."""
    return json.dumps(e.to_json(), sort_keys=True)


def refused_with_a_reason(error: ExpressionError, text: str | None = None) -> None:
    """A refusal says what was wrong; a column, where given, lies inside the text."""
    assert str(error).strip()
    column = getattr(error, "col_offset", None)
    if text is not None and column is not None:
        assert 0 <= column <= len(text), (text, column)
        assert f"at column {column}" in str(error)


CORPUS = [
    A < 100.0,
    h_out[0][0] < 100.0,
    h_out["dense_1"][0] >= -3.25,
    h_in[2][0][1] == 0,
    (A < 1) & (B > 2) | ~FLAG,
    (A < 1) & ((B > 2) | ~FLAG),
    A - (B - 1),
    (A - B) - 1,
    A / (B * 2),
    -(A + B) < 0,
    -(-A),  # noqa: B002 - the parser must keep a double negation
    ~~FLAG,
    (A < B) == (B < A),
    abs(A - B).one_of(0, 1.5, -2, True, "x"),
    (A + 1).one_of(2),
    Function("one_of", (Literal(-5), Literal(1))),
    Function("one_of", (Literal(5), Literal(1))),
    abs(abs(A)),
    A == 'it\'s "quoted" \\ ✓\n',
    m_out["weird 'name' \"q\""][0] != Literal(-0.0),
    A < 12345678901234567890123,
    A < 1e300,
    A < 1e-300,
    A == True,  # noqa: E712
    A == 1,
    A == 1.0,
    m_out[0] < Literal("a.outputs[0]"),
    model_refs("7")[1][0] - model_refs("a-b-c")[0][0] > 2,
    100 - A / 3 * 2 + B,
]
