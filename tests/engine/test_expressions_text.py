"""Tests for engine.expressions' text form: printing and parsing round trips, and the parser
refusing unsafe or malformed text (never running it) with the column at fault."""

from __future__ import annotations

import builtins
import json
import random

import pytest

from engine.errors import ExpressionError
from engine.expressions import Expression, from_json, parse, to_text
from tests.engine._expressions import A, B, CORPUS, canon, refused_with_a_reason


@pytest.mark.parametrize("expr", CORPUS, ids=range(len(CORPUS)))
def test_text_round_trip(expr: Expression) -> None:
    text = to_text(expr)
    assert canon(parse(text)) == canon(expr), text


def test_text_parses_whitespace_and_newlines() -> None:
    text = "  (m.outputs[0][0] < 1)\n\t& (m.outputs[0][1] > 2)  "
    assert parse(text).same_as((A < 1) & (B > 2))


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


@pytest.mark.parametrize(
    "text, column, words",
    [
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
    ],
)
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


def test_fuzz_corpus_is_parsed_exactly_or_refused_with_a_reason() -> None:
    rng = random.Random(20240601)
    tokens = [
        "m",
        "a-b",
        ".outputs",
        ".inputs",
        "[",
        "]",
        "(",
        ")",
        "0",
        "1",
        "-2.5",
        "1e5",
        "'x'",
        '"y"',
        "<",
        "<=",
        ">",
        ">=",
        "==",
        "!=",
        "+",
        "-",
        "*",
        "/",
        "&",
        "|",
        "~",
        "abs",
        ".one_of",
        ",",
        " ",
        "True",
        "and",
        "not",
        "lambda",
        ":",
        "__class__",
        ".",
        "'",
        '"',
        "\\",
        "f'",
        "{",
        "}",
        "*",
        "=",
        "\n",
        "é",
        "\x00",
        "#",
        "@",
        "0x1f",
        "_w0",
        "1_000",
    ]
    cases = [" ".join(rng.choice(tokens) for _ in range(rng.randint(1, 12))) for _ in range(300)]
    cases += ["".join(rng.choice(tokens) for _ in range(rng.randint(1, 20))) for _ in range(200)]
    cases += [
        "".join(chr(rng.randint(0, 0x2FF)) for _ in range(rng.randint(0, 30))) for _ in range(100)
    ]
    cases += [to_text(e)[:cut] for e in CORPUS for cut in (3, 10, 17)]
    parsed = refused = 0
    for text in cases:
        try:
            expr = parse(text)
        except ExpressionError as error:
            refused_with_a_reason(error, text)
            refused += 1
            continue
        parsed += 1
        assert canon(parse(to_text(expr))) == canon(expr), text
        assert from_json(json.loads(json.dumps(expr.to_json()))).same_as(expr), text
    assert parsed > 10 and refused > 100  # the corpus reaches both sides of the grammar
