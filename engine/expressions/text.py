"""An expression's text form, as the guide writes it: `anomaly-housing.outputs[0][0] < 100.0`.

Parentheses appear only where precedence needs them, so `parse(to_text(e))` gives
back the same tree.
"""

from __future__ import annotations

from engine.expressions.nodes import (
    COMPARISONS,
    BinaryOp,
    Expression,
    Function,
    Literal,
    UnaryOp,
    Variable,
    fail,
)

PRECEDENCE = {**dict.fromkeys(COMPARISONS, 1), "|": 2, "&": 3, "+": 4, "-": 4, "*": 5, "/": 5}
"""Binding strength of each binary operator, as Python parses it."""
UNARY = 6
ATOM = 7


def to_text(expr: Expression) -> str:
    """The guide's text form, e.g. `anomaly-housing.outputs[0][0] < 100.0`; `parse` reads it
    back."""
    return _text(expr)[0]


def quote(text: str) -> str:
    """A string literal in double quotes where that needs no escaping, else Python's repr."""
    shown = repr(text)
    return f'"{shown[1:-1]}"' if shown[0] == "'" and '"' not in text else shown


def _text(expr: Expression) -> tuple[str, int]:
    """The text of `expr` and how strongly it binds."""
    if isinstance(expr, Variable):
        field = quote(expr.field) if isinstance(expr.field, str) else str(expr.field)
        keys = (field, *map(str, expr.index))
        return f"{expr.model}.{expr.kind}" + "".join(f"[{key}]" for key in keys), ATOM
    if isinstance(expr, Literal):
        shown = quote(expr.value) if isinstance(expr.value, str) else repr(expr.value)
        return shown, UNARY if shown.startswith("-") else ATOM
    if isinstance(expr, UnaryOp):
        sign = "-" if expr.op == "neg" else "~"
        return sign + _wrapped(expr.operand, UNARY), UNARY
    if isinstance(expr, BinaryOp):
        strength = PRECEDENCE[expr.op]
        # Comparisons do not chain: a comparison on the left needs parentheses too.
        left = _wrapped(expr.left, strength + 1 if expr.op in COMPARISONS else strength)
        return f"{left} {expr.op} {_wrapped(expr.right, strength + 1)}", strength
    if isinstance(expr, Function) and expr.name == "abs":
        return f"abs({to_text(expr.args[0])})", ATOM
    if isinstance(expr, Function):
        receiver = expr.args[0]
        shown = (
            _wrapped(receiver, ATOM)
            if isinstance(receiver, (Variable, Function))
            else f"({to_text(receiver)})"
        )
        return f"{shown}.one_of({', '.join(to_text(arg) for arg in expr.args[1:])})", ATOM
    fail(f"not an expression node: {type(expr).__name__}")


def _wrapped(expr: Expression, needed: int) -> str:
    """`expr`'s text, in parentheses if it binds less strongly than `needed`."""
    shown, strength = _text(expr)
    return shown if strength >= needed else f"({shown})"
