"""The expression nodes: frozen dataclasses, checked when built, combined with Python operators.

`m.outputs[0][0] < 100.0` builds a `BinaryOp` of a `Variable` and a `Literal`:
the operators of `Expression` build nodes instead of computing. Every node checks
its fields, so an ill-formed tree cannot exist, however it was built (operators,
`from_json`, `parse`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, Literal as TypingLiteral, NoReturn, get_args

import numpy as np

from engine.errors import ExpressionError

Kind = TypingLiteral["inputs", "outputs"]
BinaryOpName = TypingLiteral["<", "<=", ">", ">=", "==", "!=", "+", "-", "*", "/", "&", "|"]
UnaryOpName = TypingLiteral["neg", "not"]
FunctionName = TypingLiteral["abs", "one_of"]
Scalar = bool | int | float | str

MODEL_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?")
MAX_DEPTH = 100
"""Deepest nesting accepted from text or JSON (deeper is refused, never recursed into)."""
KINDS: tuple[str, ...] = get_args(Kind)
BINARY_OPS: tuple[str, ...] = get_args(BinaryOpName)
UNARY_OPS: tuple[str, ...] = get_args(UnaryOpName)
FUNCTIONS: tuple[str, ...] = get_args(FunctionName)
COMPARISONS, ARITHMETIC, LOGIC = BINARY_OPS[:6], BINARY_OPS[6:10], BINARY_OPS[10:]
_SCALARS = (bool, int, float, str)


def fail(message: str, column: int | None = None) -> NoReturn:
    """Raise ExpressionError, with the column of the text it is about when there is one."""
    error = ExpressionError(message if column is None else f"{message} (at column {column})")
    error.col_offset = column  # type: ignore[attr-defined]
    raise error


def require(condition: object, message: str) -> None:
    if not condition:
        fail(message)


def is_index(value: object) -> bool:
    return type(value) is int and value >= 0


def _operator(
    op: BinaryOpName, reflected: bool = False
) -> Callable[[Expression, object], BinaryOp]:
    """An operator method of Expression that builds `self op other` (`other op self`)."""

    def build(self: Expression, other: object) -> BinaryOp:
        operand = lift(other)
        return BinaryOp(op, operand, self) if reflected else BinaryOp(op, self, operand)

    return build


class Expression:
    """Base of every node: operators build new nodes; `same_as` compares structure.

    Hashing is by identity: `==` builds a node, so a structural hash would lie.
    """

    __array_ufunc__ = None  # numpy scalars on the left defer to our reflected operators
    __hash__ = object.__hash__

    __lt__, __le__ = _operator("<"), _operator("<=")
    __gt__, __ge__ = _operator(">"), _operator(">=")
    __eq__, __ne__ = _operator("=="), _operator("!=")  # type: ignore[assignment]
    __add__, __radd__ = _operator("+"), _operator("+", reflected=True)
    __sub__, __rsub__ = _operator("-"), _operator("-", reflected=True)
    __mul__, __rmul__ = _operator("*"), _operator("*", reflected=True)
    __truediv__, __rtruediv__ = _operator("/"), _operator("/", reflected=True)
    __and__, __rand__ = _operator("&"), _operator("&", reflected=True)
    __or__, __ror__ = _operator("|"), _operator("|", reflected=True)

    def __neg__(self) -> Expression:
        return UnaryOp("neg", self)

    def __invert__(self) -> Expression:
        return UnaryOp("not", self)

    def __abs__(self) -> Expression:
        return Function("abs", (self,))

    def one_of(self, *values: Scalar) -> Function:
        """True where the value equals one of `values`, e.g. `m.outputs[0][0].one_of(1, 2)`."""
        require(values, "one_of needs at least one value, e.g. x.one_of(1, 2)")
        return Function("one_of", (self, *(lift(value, literal_only=True) for value in values)))

    def __bool__(self) -> bool:
        fail(
            f"{str(self)!r} has no truth value: use & | ~ instead of and/or/not, "
            "and (a < b) & (b < c) instead of a < b < c"
        )

    def __iter__(self) -> NoReturn:
        fail(f"{str(self)!r} cannot be iterated: index it (m.outputs[0][0]) or use x.one_of(...)")

    def to_json(self) -> dict[str, Any]:
        """The node as JSON data: `{"type": ..., <fields>}`, children nested the same way."""
        out: dict[str, Any] = {"type": NODE_TYPES[type(self)]}
        for field in fields(self):  # type: ignore[arg-type]
            value = getattr(self, field.name)
            if isinstance(value, Expression):
                value = value.to_json()
            elif isinstance(value, tuple):
                value = [item.to_json() if isinstance(item, Expression) else item for item in value]
            out[field.name] = value
        return out

    def same_as(self, other: object) -> bool:
        """Structural equality, exact on types (1, 1.0 and True differ)."""
        return isinstance(other, Expression) and _canonical(self) == _canonical(other)

    def __str__(self) -> str:
        from engine.expressions.text import to_text  # the printer imports these nodes

        return to_text(self)


def _canonical(expr: Expression) -> str:
    return json.dumps(expr.to_json(), sort_keys=True)


def lift(value: object, literal_only: bool = False) -> Expression:
    """`value` as a node: an expression as it is, a number, bool or string as a Literal."""
    value = value.item() if isinstance(value, np.generic) else value
    if isinstance(value, Literal if literal_only else Expression):
        return value
    wanted = "a number, bool or string" + ("" if literal_only else ", or another expression")
    require(
        type(value) in _SCALARS,
        f"cannot use {type(value).__name__} {value!r:.40} in an expression: use {wanted}",
    )
    return Literal(value)  # type: ignore[arg-type]


def check_model(model: object) -> None:
    require(
        isinstance(model, str) and MODEL_NAME.fullmatch(model),
        f"model name must match {MODEL_NAME.pattern}, found {model!r:.60}",
    )


@dataclass(frozen=True, eq=False)
class Variable(Expression):
    """A model tensor `model.kind[field][index...]`; `index` picks inside each row."""

    model: str
    kind: Kind
    field: int | str
    index: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        check_model(self.model)
        require(
            self.kind in KINDS,
            f"variable kind must be one of {', '.join(KINDS)}, found {self.kind!r:.40}",
        )
        require(
            is_index(self.field) or (type(self.field) is str and self.field),
            f"field must be a non-negative int or a non-empty name, found {self.field!r:.60}",
        )
        require(
            type(self.index) is tuple and all(map(is_index, self.index)),
            f"index must be a tuple of non-negative ints, found {self.index!r:.60}",
        )

    def __getitem__(self, position: object) -> Variable:
        position = position.item() if isinstance(position, np.integer) else position
        require(
            is_index(position),
            f"{self}[...] needs a non-negative int index, found "
            f"{type(position).__name__} {position!r:.40}",
        )
        return Variable(self.model, self.kind, self.field, (*self.index, position))  # type: ignore[arg-type]


@dataclass(frozen=True, eq=False)
class Literal(Expression):
    """A constant: finite number, bool or string."""

    value: Scalar

    def __post_init__(self) -> None:
        require(
            type(self.value) in _SCALARS,
            f"literal must be a number, bool or string, found {type(self.value).__name__}",
        )
        require(
            type(self.value) is not float or math.isfinite(self.value),
            f"literal numbers must be finite, found {self.value!r}",
        )
        require(
            type(self.value) is not int or self.value.bit_length() <= 1000,
            "integer literals must fit in 1000 bits",
        )

    def __neg__(self) -> Expression:
        if type(self.value) in (int, float):
            return Literal(-self.value)  # type: ignore[operator]
        return super().__neg__()


@dataclass(frozen=True, eq=False)
class BinaryOp(Expression):
    """`left op right`: a comparison, arithmetic, `&` or `|`."""

    op: BinaryOpName
    left: Expression
    right: Expression

    def __post_init__(self) -> None:
        require(
            self.op in BINARY_OPS,
            f"binary operator must be one of {' '.join(BINARY_OPS)}, found {self.op!r:.40}",
        )
        require(
            isinstance(self.left, Expression) and isinstance(self.right, Expression),
            "binary operands must be expressions",
        )


@dataclass(frozen=True, eq=False)
class UnaryOp(Expression):
    """`-operand` (neg) or `~operand` (not)."""

    op: UnaryOpName
    operand: Expression

    def __post_init__(self) -> None:
        require(
            self.op in UNARY_OPS,
            f"unary operator must be one of {', '.join(UNARY_OPS)}, found {self.op!r:.40}",
        )
        require(isinstance(self.operand, Expression), "unary operand must be an expression")
        require(
            self.op != "neg" or not isinstance(self.operand, Literal),
            f"do not negate a literal ({getattr(self.operand, 'value', None)!r}): write the "
            "negative number",
        )


@dataclass(frozen=True, eq=False)
class Function(Expression):
    """`abs(x)` or `x.one_of(v1, v2, ...)` (args[0] is x, the rest are literals)."""

    name: FunctionName
    args: tuple[Expression, ...]

    def __post_init__(self) -> None:
        require(
            self.name in FUNCTIONS,
            f"function must be one of {', '.join(FUNCTIONS)}, found {self.name!r:.40}",
        )
        require(
            type(self.args) is tuple and all(isinstance(a, Expression) for a in self.args),
            f"{self.name} arguments must be a tuple of expressions",
        )
        require(
            self.name != "abs" or len(self.args) == 1,
            f"abs takes exactly one argument, found {len(self.args)}",
        )
        require(
            self.name != "one_of"
            or (len(self.args) >= 2 and all(isinstance(arg, Literal) for arg in self.args[1:])),
            "one_of takes an expression and at least one literal value",
        )


NODE_TYPES: dict[type[Expression], str] = {
    Variable: "variable",
    Literal: "literal",
    BinaryOp: "binary",
    UnaryOp: "unary",
    Function: "function",
}
"""Each node class by the `type` its JSON form names."""


def children(expr: Expression) -> tuple[Expression, ...]:
    """The nodes directly under `expr`, in field order."""
    found: list[Expression] = []
    for field in fields(expr):  # type: ignore[arg-type]
        value = getattr(expr, field.name)
        for item in value if isinstance(value, tuple) else (value,):
            if isinstance(item, Expression):
                found.append(item)
    return tuple(found)
