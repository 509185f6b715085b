"""Tests for engine.expressions' JSON form: exact round trips, and from_json refusing every
malformed tree with a reason."""

from __future__ import annotations

import json
import random

import pytest

from engine.errors import ExpressionError
from engine.expressions import Expression, Literal, from_json, parse
from tests.engine._expressions import CORPUS, refused_with_a_reason


@pytest.mark.parametrize("expr", CORPUS, ids=range(len(CORPUS)))
def test_json_round_trip_is_exact(expr: Expression) -> None:
    wire = json.dumps(expr.to_json())
    back = from_json(json.loads(wire))
    assert json.dumps(back.to_json()) == wire
    assert back.same_as(expr)


def test_literal_types_stay_distinct() -> None:
    wires = {json.dumps(Literal(v).to_json()) for v in (1, 1.0, True)}
    assert len(wires) == 3
    assert not Literal(1).same_as(Literal(1.0))
    assert type(parse("m.outputs[0][0] == 1.0").right.value) is float  # type: ignore[attr-defined]


GOOD_VAR = {"type": "variable", "model": "m", "kind": "outputs", "field": 0, "index": [0]}
GOOD_LIT = {"type": "literal", "value": 1.0}


@pytest.mark.parametrize(
    "data, words",
    [
        (
            {"type": "attribute", "name": "x"},
            "unknown expression node type 'attribute': allowed are variable, literal",
        ),
        ({"kind": "literal", "value": 1}, "unknown expression node type None"),
        ({"type": "binary", "op": "**", "left": GOOD_VAR, "right": GOOD_LIT}, "found '**'"),
        (
            {"type": "binary", "op": "and", "left": GOOD_VAR, "right": GOOD_LIT},
            "must be one of < <= > >=",
        ),
        (
            {"type": "unary", "op": "pos", "operand": GOOD_VAR},
            "must be one of neg, not, found 'pos'",
        ),
        ({"type": "unary", "op": "neg", "operand": GOOD_LIT}, "negate a literal"),
        (
            {"type": "function", "name": "eval", "args": [GOOD_VAR]},
            "must be one of abs, one_of, found 'eval'",
        ),
        ({"type": "function", "name": "abs", "args": [GOOD_VAR, GOOD_LIT]}, "exactly one argument"),
        ({"type": "function", "name": "one_of", "args": [GOOD_VAR]}, "at least one literal"),
        (
            {"type": "function", "name": "one_of", "args": [GOOD_VAR, GOOD_VAR]},
            "at least one literal",
        ),
        ({"type": "function", "name": "abs", "args": GOOD_VAR}, "args must be a list, found dict"),
        (
            {**GOOD_VAR, "field": 1.0},
            "field must be a non-negative int or a non-empty name, found 1.0",
        ),
        ({**GOOD_VAR, "field": True}, "found True"),
        ({**GOOD_VAR, "field": ""}, "non-empty name"),
        ({**GOOD_VAR, "index": [0, "1"]}, "index must be a tuple of non-negative ints"),
        ({**GOOD_VAR, "index": [-1]}, "non-negative ints"),
        ({**GOOD_VAR, "index": 0}, "index must be a list, found int"),
        ({**GOOD_VAR, "kind": "weights"}, "kind must be one of inputs, outputs, found 'weights'"),
        ({**GOOD_VAR, "model": "Bad_Name"}, "model name must match"),
        ({**GOOD_VAR, "model": 3}, "model name must match"),
        ({**GOOD_VAR, "extra": 1}, "must have keys"),
        ({"type": "literal"}, "must have keys ['type', 'value'], found ['type']"),
        (
            {"type": "literal", "value": None},
            "literal must be a number, bool or string, found NoneType",
        ),
        ({"type": "literal", "value": [1]}, "found list"),
        ({"type": "literal", "value": float("inf")}, "finite"),
        ({"type": ["literal"], "value": 1}, "unknown expression node type"),
        ("literal", "must be a JSON object, found str"),
        (
            {"type": "binary", "op": "<", "left": 1, "right": GOOD_LIT},
            "must be a JSON object, found int",
        ),
    ],
)
def test_from_json_rejects(data: object, words: str) -> None:
    with pytest.raises(ExpressionError) as info:
        from_json(data)
    assert words in str(info.value)


def test_from_json_rejects_deep_nesting() -> None:
    data: dict = GOOD_VAR
    for _ in range(200):
        data = {"type": "unary", "op": "neg", "operand": data}
    with pytest.raises(ExpressionError, match="nests deeper"):
        from_json(data)


def test_fuzz_json_mutations_are_rebuilt_exactly_or_refused_with_a_reason() -> None:
    rng = random.Random(7)
    junk = [
        None,
        1.5,
        -1,
        True,
        "x",
        "neg",
        "<",
        [],
        {},
        [1],
        {"type": "literal"},
        float("nan"),
        "ABC",
    ]
    rebuilt = refused = 0
    for _ in range(300):
        data = json.loads(json.dumps(rng.choice(CORPUS).to_json()))
        node = data
        while rng.random() < 0.6:
            kids = [v for v in node.values() if isinstance(v, dict)]
            if not kids:
                break
            node = rng.choice(kids)
        node[rng.choice([*node, "extra"])] = rng.choice(junk)
        try:
            expr = from_json(data)
        except ExpressionError as error:
            refused_with_a_reason(error)
            refused += 1
            continue
        rebuilt += 1
        assert expr.to_json() == data  # accepted means it was a well-formed tree, kept as is
    assert rebuilt and refused > 100
