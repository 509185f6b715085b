"""engine.expressions under generated trees and text (hypothesis, seeded, bounded).

Generated trees survive the text and JSON forms exactly and evaluate over generated
tensors to an array or an ExpressionError; generated text is parsed into the same
tree its printed form gives, or refused with a message, and never runs as Python;
nesting past MAX_DEPTH is refused, in text and in JSON, without a RecursionError.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from engine.errors import ExpressionError
from engine.expressions import (
    MAX_DEPTH,
    BinaryOp,
    Expression,
    Function,
    Literal,
    UnaryOp,
    Variable,
    evaluate,
    from_json,
    parse,
    to_text,
)

pytestmark = pytest.mark.timeout(120)

SEEDED = settings(
    max_examples=200,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.generate],
)
BINARY = ["<", "<=", ">", ">=", "==", "!=", "+", "-", "*", "/", "&", "|"]

literals = st.one_of(
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=6),
).map(Literal)
variables = st.builds(
    Variable,
    model=st.sampled_from(["m", "a-b", "7", "anomaly-housing"]),
    kind=st.sampled_from(["inputs", "outputs"]),
    field=st.integers(0, 2) | st.sampled_from(["x", "dense_1", "a b", "é\"'"]),
    index=st.lists(st.integers(0, 2), max_size=2).map(tuple),
)


def _extend(children: st.SearchStrategy[Expression]) -> st.SearchStrategy[Expression]:
    return st.one_of(
        st.builds(BinaryOp, st.sampled_from(BINARY), children, children),
        st.builds(UnaryOp, st.just("not"), children),
        st.builds(
            UnaryOp,
            st.just("neg"),
            variables | children.filter(lambda child: not isinstance(child, Literal)),
        ),
        st.builds(lambda child: Function("abs", (child,)), children),
        st.builds(
            lambda child, values: Function("one_of", (child, *values)),
            children,
            st.lists(literals, min_size=1, max_size=3),
        ),
    )


trees = st.recursive(literals | variables, _extend, max_leaves=12)


@given(expr=trees)
@SEEDED
def test_generated_trees_survive_the_text_and_json_forms(expr: Expression) -> None:
    assert parse(to_text(expr)).same_as(expr), to_text(expr)
    assert from_json(json.loads(json.dumps(expr.to_json()))).same_as(expr)


TENSOR_VALUES = st.sampled_from(
    [
        np.array([[1.0, 2.0, np.nan]] * 3),
        np.array([[1, 2, 3]] * 3),
        np.array([[True, False]] * 3),
        np.array([["a", "b"]] * 3),
        np.array([1.0, 0.0, -1.0]),
        np.zeros((3, 0)),
    ]
)


@st.composite
def tensors(draw: Any) -> dict[str, Any]:
    """Some of the models trees name, with fields as dicts or plain lists."""
    out: dict[str, Any] = {}
    for model in draw(st.lists(st.sampled_from(["m", "a-b", "7"]), unique=True)):
        fields = draw(st.lists(TENSOR_VALUES, max_size=3))
        named = draw(st.booleans())
        out[model] = {
            kind: (
                {name: value for name, value in zip(["x", "dense_1", "a b"], fields)}
                if named
                else list(fields)
            )
            for kind in ("inputs", "outputs")
        }
    return out


@given(expr=trees, batch=tensors())
@SEEDED
def test_generated_trees_evaluate_or_raise_expression_error(
    expr: Expression, batch: dict[str, Any]
) -> None:
    try:
        result = evaluate(expr, batch)
    except ExpressionError as error:
        assert str(error)
        return
    assert isinstance(result, np.ndarray)


TOKENS = [
    "m",
    "a-b",
    ".outputs",
    ".inputs",
    "[0]",
    "['x']",
    "[",
    "]",
    "(",
    ")",
    "0",
    "-1.5",
    "1e308",
    "'s'",
    "<",
    "==",
    "+",
    "-",
    "*",
    "/",
    "&",
    "|",
    "~",
    "abs(",
    ".one_of(",
    ",",
    " ",
    "True",
    "None",
    "and",
    "lambda:",
    "pwn()",
    "__import__('os')",
    ".__class__",
    "[::]",
    "**",
    "@",
    "f'{pwn()}'",
    "\n",
    "\x00",
    "é",
    "#",
    "\\",
    '"',
    "'",
]


@pytest.fixture
def tripwire(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """A builtin `pwn()` that records a call: text that ran as Python would call it."""
    called: list[str] = []
    monkeypatch.setattr(builtins, "pwn", lambda: called.append("pwn"), raising=False)
    yield called


@given(text=st.lists(st.sampled_from(TOKENS), max_size=15).map("".join) | st.text(max_size=40))
@SEEDED
def test_generated_text_is_parsed_exactly_or_refused_and_never_run(
    tripwire: list[str], text: str
) -> None:
    try:
        expr = parse(text)
    except ExpressionError as error:
        assert str(error)
        column = getattr(error, "col_offset", None)
        assert column is None or 0 <= column <= len(text)
    else:
        assert parse(to_text(expr)).same_as(expr)
    assert not tripwire


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 1000, 100_000])
def test_deep_nesting_is_refused_in_text_and_json_without_recursing(depth: int) -> None:
    for text in (
        "~" * depth + "m.outputs[0]",
        "abs(" * depth + "m.outputs[0]" + ")" * depth,
        "m.outputs[0] + (" * depth + "1" + ")" * depth,
    ):
        with pytest.raises(ExpressionError, match="nests deeper|longer than|too many nested"):
            parse(text)
    try:  # parentheses alone add no node: the tree is one variable deep, if Python reads it
        assert parse("(" * depth + "m.outputs[0]" + ")" * depth).same_as(
            Variable("m", "outputs", 0)
        )
    except ExpressionError as error:
        assert "too many nested parentheses" in str(error) or "longer than" in str(error)
    data: dict[str, Any] = {
        "type": "variable",
        "model": "m",
        "kind": "outputs",
        "field": 0,
        "index": [],
    }
    for _ in range(depth):
        data = {"type": "unary", "op": "not", "operand": data}
    with pytest.raises(ExpressionError, match=f"nests deeper than {MAX_DEPTH} levels"):
        from_json(data)


def test_nesting_up_to_the_limit_is_accepted() -> None:
    text = "~" * (MAX_DEPTH - 1) + "m.outputs[0]"
    assert parse(text).same_as(from_json(parse(text).to_json()))
