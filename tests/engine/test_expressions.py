"""Tests for engine/expressions.py: builder, JSON and text round trips, safe parsing, evaluation."""

from __future__ import annotations

import builtins
import dataclasses
import json
import random
import warnings

import numpy as np
import pytest

from engine.errors import ExpressionError
from engine.expressions import (
    BinaryOp,
    Expression,
    FieldRefs,
    Function,
    Literal,
    TensorRefs,
    UnaryOp,
    Variable,
    check,
    evaluate,
    from_json,
    model_refs,
    models_referenced,
    parse,
    to_text,
)

HOUSING = "anomaly-housing"
h_in, h_out = model_refs(HOUSING)
m_in, m_out = model_refs("m")
A = m_out[0][0]  # values 1, 2, 3
B = m_out[0][1]  # values 3, 2, 1
FLAG = m_out["flag"]  # True, False, True


def _tensors() -> dict:
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


def _canon(e: Expression) -> str:
    return json.dumps(e.to_json(), sort_keys=True)


# --- the guide's example -------------------------------------------------------------------------


def test_housing_guide_example_flags_high_price() -> None:
    validation = h_out[0][0] < 100.0
    batch = {HOUSING: {"inputs": {"dense_16_input": np.zeros((2, 13))},
                       "outputs": {"dense_1": np.array([[350.46990966796875], [50.0]], dtype=np.float32)}}}
    assert to_text(validation) == "anomaly-housing.outputs[0][0] < 100.0"
    assert check(validation, batch).tolist() == [False, True]
    assert check(parse("anomaly-housing.outputs[0][0] < 100.0"), batch).tolist() == [False, True]
    assert check(h_out["dense_1"][0] < 100.0, batch).tolist() == [False, True]


def test_builder_produces_variables() -> None:
    assert h_out[0].to_json() == {"type": "variable", "model": HOUSING, "kind": "outputs", "field": 0,
                                  "index": []}
    assert h_out["dense_1"][0].same_as(Variable(HOUSING, "outputs", "dense_1", (0,)))
    assert h_in[1][2][3].same_as(Variable(HOUSING, "inputs", 1, (2, 3)))
    assert m_out[np.int64(1)][np.int32(2)].same_as(Variable("m", "outputs", 1, (2,)))
    refs = model_refs("m")
    assert isinstance(refs, TensorRefs) and refs.outputs == FieldRefs("m", "outputs")


def test_nodes_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        A.model = "other"  # type: ignore[misc]


# --- every operator --------------------------------------------------------------------------------

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
    ("and", lambda: (A > 1) & FLAG, "(m.outputs[0][0] > 1) & m.outputs[\"flag\"]", [False, False, True]),
    ("or", lambda: (A > 2) | ~FLAG, "(m.outputs[0][0] > 2) | ~m.outputs[\"flag\"]", [False, True, True]),
    ("rand", lambda: True & FLAG, "True & m.outputs[\"flag\"]", [True, False, True]),
    ("ror", lambda: False | FLAG, "False | m.outputs[\"flag\"]", [True, False, True]),
    ("not", lambda: ~(A < 2), "~(m.outputs[0][0] < 2)", [False, True, True]),
    ("one_of", lambda: A.one_of(1, 3), "m.outputs[0][0].one_of(1, 3)", [True, False, True]),
    ("one_of_str", lambda: m_out["label"].one_of("cat", "cow"),
     "m.outputs[\"label\"].one_of(\"cat\", \"cow\")", [True, False, True]),
    ("precedence", lambda: (A - (B - 1)) * 2, "(m.outputs[0][0] - (m.outputs[0][1] - 1)) * 2",
     [-2.0, 2.0, 6.0]),
    ("seq_tensor", lambda: model_refs("n-2")[1][0] >= -20, "n-2.outputs[0] >= -20", [True, True, True]),
    ("mixed", lambda: abs(-A + 1) / 2 <= 0.5, "abs(-m.outputs[0][0] + 1) / 2 <= 0.5", [True, True, False]),
]


@pytest.mark.parametrize("build, text, expected", [o[1:] for o in OPERATORS], ids=[o[0] for o in OPERATORS])
def test_operator(build, text: str, expected: list) -> None:
    expr = build()
    assert isinstance(expr, Expression)
    assert to_text(expr) == text
    assert parse(text).same_as(expr)
    assert evaluate(expr, _tensors()).tolist() == expected


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


# --- JSON round trip -------------------------------------------------------------------------------

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
    A == "it's \"quoted\" \\ ✓\n",
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


@pytest.mark.parametrize("expr", CORPUS, ids=range(len(CORPUS)))
def test_json_round_trip_is_exact(expr: Expression) -> None:
    wire = json.dumps(expr.to_json())
    back = from_json(json.loads(wire))
    assert json.dumps(back.to_json()) == wire
    assert back.same_as(expr)


@pytest.mark.parametrize("expr", CORPUS, ids=range(len(CORPUS)))
def test_text_round_trip(expr: Expression) -> None:
    text = to_text(expr)
    assert _canon(parse(text)) == _canon(expr), text


def test_literal_types_stay_distinct() -> None:
    wires = {json.dumps(Literal(v).to_json()) for v in (1, 1.0, True)}
    assert len(wires) == 3
    assert not Literal(1).same_as(Literal(1.0))
    assert type(parse("m.outputs[0][0] == 1.0").right.value) is float  # type: ignore[attr-defined]


def test_text_parses_whitespace_and_newlines() -> None:
    text = "  (m.outputs[0][0] < 1)\n\t& (m.outputs[0][1] > 2)  "
    assert parse(text).same_as((A < 1) & (B > 2))


# --- unsafe and malformed text ---------------------------------------------------------------------

UNSAFE = [
    "__import__('os').system('x')",
    "m.outputs[0].__class__",
    "().__class__.__bases__",
    "lambda: 1",
    "[x for x in m.outputs]",
    "m.outputs[0] < 1 and m.outputs[1] > 2",
    "m.outputs[0] < 1 or m.outputs[1] > 2",
    "not m.outputs[0][0]",
    "open('f')",
    "m.outputs[0][0] < 1 < 2",
    "f'{m.outputs[0]}'",
    "abs(x=m.outputs[0][0])",
    "abs(*m.outputs)",
    "m.outputs[0][0].one_of(*[1])",
    "m.outputs[0][0].one_of(m.outputs[0][1])",
    "abs(m.outputs[0][0], 1)",
    "m.outputs[0][0] ** 2",
    "m.outputs[0][0] % 2",
    "m.outputs[0][0] in (1, 2)",
    "m.outputs[0][0] is None",
    "m.outputs[0:1][0]",
    "m.outputs[0][-1]",
    "m.outputs[0][1.5]",
    "m.outputs[0]['a']",
    "m.outputs",
    "m.weights[0]",
    "M.outputs[0]",
    "x",
    "None",
    "b'bytes'",
    "1j",
    "(m.outputs[0], 1)",
    "{m.outputs[0]}",
    "(y := 1)",
    "1 if m.outputs[0] else 2",
    "m.outputs[0][0] < 1e999",
    "getattr(m, 'outputs')",
    "m.outputs[0][0].__eq__(1)",
    "+m.outputs[0][0]",
    "--5",
    "",
    "   ",
    "m.outputs[0][0] <",
    "m.outputs[0",
    "m.outputs[0][0] < 1; import os",
    '"""a"b.outputs"""',  # triple quotes would hide a model name from the placeholder scan
    "m.outputs[0][0] < 1\x00",
    "x" * 5000,
]


@pytest.mark.parametrize("text", UNSAFE)
def test_unsafe_or_malformed_text_is_rejected(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("eval/exec must never be called")

    monkeypatch.setattr(builtins, "eval", boom)
    monkeypatch.setattr(builtins, "exec", boom)
    with pytest.raises(ExpressionError) as info:
        parse(text)
    assert str(info.value)


@pytest.mark.parametrize("text, column, words", [
    ("m.outputs[0].__class__", 13, "'__class__' is not allowed"),
    ("anomaly-housing.outputs[0][0] + xx", 32, "name 'xx' is not allowed"),
    ("a-b.outputs[0][0] < 1 < 2", 0, "chained comparisons"),
    ("(a-b.outputs[0][0] < 1) and (c.outputs[0][0] < 2)", 0, "use & and |"),
    ("abs(a-b.outputs[0][0]) + open('f')", 25, "calling 'open' is not allowed"),
    ("m.outputs[0][0] + (lambda: 1)", 19, "lambda not allowed"),
    ("m.outputs[0][0] + lambda: 1", 18, "invalid expression syntax"),
    ("long-model-name.outputs[0][0] < f'{1}'", 32, "f-strings not allowed"),
    ("  m.outputs[0][-1]", 15, "non-negative int"),
    ("abs(m.outputs[0][0], k=1)", 21, "keyword arguments are not allowed"),
    ("m.outputs[0][0].one_of(1, m.outputs[0][1])", 26, "one_of values must be literal"),
    ('m.outputs[0][0] == """x"a.outputs"""', 24, "inside this string literal form"),
])
def test_rejection_names_the_original_column(text: str, column: int, words: str) -> None:
    with pytest.raises(ExpressionError) as info:
        parse(text)
    assert info.value.col_offset == column  # type: ignore[attr-defined]
    assert f"at column {column}" in str(info.value)
    assert words in str(info.value)


def test_never_evaluates_text(tmp_path: pytest.TempPathFactory) -> None:
    marker = tmp_path / "pwned"  # type: ignore[operator]
    with pytest.raises(ExpressionError):
        parse(f"__import__('pathlib').Path({str(marker)!r}).touch()")
    assert not marker.exists()


def _refused_with_a_reason(error: ExpressionError, text: str | None = None) -> None:
    """A refusal says what was wrong; a column, where given, lies inside the text."""
    assert str(error).strip()
    column = getattr(error, "col_offset", None)
    if text is not None and column is not None:
        assert 0 <= column <= len(text), (text, column)
        assert f"at column {column}" in str(error)


def test_fuzz_corpus_is_parsed_exactly_or_refused_with_a_reason() -> None:
    rng = random.Random(20240601)
    tokens = ["m", "a-b", ".outputs", ".inputs", "[", "]", "(", ")", "0", "1", "-2.5", "1e5", "'x'", '"y"',
              "<", "<=", ">", ">=", "==", "!=", "+", "-", "*", "/", "&", "|", "~", "abs", ".one_of", ",",
              " ", "True", "and", "not", "lambda", ":", "__class__", ".", "'", '"', "\\", "f'", "{", "}",
              "*", "=", "\n", "é", "\x00", "#", "@", "0x1f", "_w0", "1_000"]
    cases = [" ".join(rng.choice(tokens) for _ in range(rng.randint(1, 12))) for _ in range(300)]
    cases += ["".join(rng.choice(tokens) for _ in range(rng.randint(1, 20))) for _ in range(200)]
    cases += ["".join(chr(rng.randint(0, 0x2FF)) for _ in range(rng.randint(0, 30))) for _ in range(100)]
    cases += [to_text(e)[:cut] for e in CORPUS for cut in (3, 10, 17)]
    parsed = refused = 0
    for text in cases:
        try:
            expr = parse(text)
        except ExpressionError as error:
            _refused_with_a_reason(error, text)
            refused += 1
            continue
        parsed += 1
        assert _canon(parse(to_text(expr))) == _canon(expr), text
        assert from_json(json.loads(json.dumps(expr.to_json()))).same_as(expr), text
    assert parsed > 10 and refused > 100  # the corpus reaches both sides of the grammar


def test_fuzz_json_mutations_are_rebuilt_exactly_or_refused_with_a_reason() -> None:
    rng = random.Random(7)
    junk = [None, 1.5, -1, True, "x", "neg", "<", [], {}, [1], {"type": "literal"}, float("nan"), "ABC"]
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
            _refused_with_a_reason(error)
            refused += 1
            continue
        rebuilt += 1
        assert expr.to_json() == data  # accepted means it was a well-formed tree, kept as is
    assert rebuilt and refused > 100


# --- from_json strictness --------------------------------------------------------------------------

GOOD_VAR = {"type": "variable", "model": "m", "kind": "outputs", "field": 0, "index": [0]}
GOOD_LIT = {"type": "literal", "value": 1.0}


@pytest.mark.parametrize("data, words", [
    ({"type": "attribute", "name": "x"},
     "unknown expression node type 'attribute': allowed are variable, literal"),
    ({"kind": "literal", "value": 1}, "unknown expression node type None"),
    ({"type": "binary", "op": "**", "left": GOOD_VAR, "right": GOOD_LIT}, "found '**'"),
    ({"type": "binary", "op": "and", "left": GOOD_VAR, "right": GOOD_LIT}, "must be one of < <= > >="),
    ({"type": "unary", "op": "pos", "operand": GOOD_VAR}, "must be one of neg, not, found 'pos'"),
    ({"type": "unary", "op": "neg", "operand": GOOD_LIT}, "negate a literal"),
    ({"type": "function", "name": "eval", "args": [GOOD_VAR]}, "must be one of abs, one_of, found 'eval'"),
    ({"type": "function", "name": "abs", "args": [GOOD_VAR, GOOD_LIT]}, "exactly one argument"),
    ({"type": "function", "name": "one_of", "args": [GOOD_VAR]}, "at least one literal"),
    ({"type": "function", "name": "one_of", "args": [GOOD_VAR, GOOD_VAR]}, "at least one literal"),
    ({"type": "function", "name": "abs", "args": GOOD_VAR}, "args must be a list, found dict"),
    ({**GOOD_VAR, "field": 1.0}, "field must be a non-negative int or a non-empty name, found 1.0"),
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
    ({"type": "literal", "value": None}, "literal must be a number, bool or string, found NoneType"),
    ({"type": "literal", "value": [1]}, "found list"),
    ({"type": "literal", "value": float("inf")}, "finite"),
    ({"type": ["literal"], "value": 1}, "unknown expression node type"),
    ("literal", "must be a JSON object, found str"),
    ({"type": "binary", "op": "<", "left": 1, "right": GOOD_LIT}, "must be a JSON object, found int"),
])
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


# --- the builder fails loudly ----------------------------------------------------------------------


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


@pytest.mark.parametrize("build, words", [
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
])
def test_builder_rejects(build, words: str) -> None:
    with pytest.raises(ExpressionError) as info:
        build()
    assert words in str(info.value)


# --- evaluation ------------------------------------------------------------------------------------


@pytest.mark.parametrize("expr, words", [
    (model_refs("ghost")[1][0][0] < 1,
     "ghost.outputs[0][0]: model 'ghost' is not in this batch; available models: 'm', 'n-2'"),
    (m_out["nope"][0] < 1, "has no outputs field 'nope'; available: 0: 'pair', 1: 'flag', 2: 'label'"),
    (m_out[7][0] < 1, "has no outputs field 7"),
    (m_in[0][0][0] < 1,
     "m.inputs[0][0][0]: tensor of shape (3, 1) (rows first) has 1 per-row dimension(s), cannot apply 2"),
    (m_out["flag"][0],
     "m.outputs[\"flag\"][0]: tensor of shape (3,) (rows first) has 0 per-row dimension(s)"),
    (m_out[0][2] < 1, "index 2 is out of range for per-row dimension 0 of size 2 (shape (3, 2))"),
    (model_refs("n-2")[1]["x"] < 1, "its outputs are 1 unnamed tensors, use a position"),
    ((A + 1) & FLAG, "needs true/false (compare first"),
    (~A, "needs true/false"),
    (FLAG + 1, "needs numeric operands, found bool"),
    (-m_out["label"], "needs numeric operands"),
    (m_out["label"] < 1, "cannot evaluate m.outputs[\"label\"] < 1"),
    (A.one_of("x"), "cannot evaluate"),
])
def test_evaluation_errors_are_clear(expr: Expression, words: str) -> None:
    with pytest.raises(ExpressionError) as info:
        check(expr, _tensors())
    assert words in str(info.value)


@pytest.mark.parametrize("expr, shape", [(A + 1, "float64 of shape (3,)"),
                                         (m_out[0] < 1, "bool of shape (3, 2)"),
                                         (Literal(True), "bool of shape ()")])
def test_check_requires_one_bool_per_row(expr: Expression, shape: str) -> None:
    assert evaluate(expr, _tensors()) is not None
    with pytest.raises(ExpressionError, match="one true/false value per row") as info:
        check(expr, _tensors())
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


def test_models_referenced() -> None:
    expr = (h_out[0][0] < 1) | ~(model_refs("b-2")[0]["x"][0] > A) & abs(A).one_of(1)
    assert models_referenced(expr) == {HOUSING, "b-2", "m"}
    assert models_referenced(Literal(True)) == set()
    assert models_referenced(parse("7.inputs[0][0] - a-b.outputs[0][0] > 2")) == {"7", "a-b"}
