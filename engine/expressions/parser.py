"""Reading an expression's text form safely: Python's parser and a strict whitelist, never eval.

Model names may contain `-`, which Python would read as a minus, so each model
name before `.inputs`/`.outputs` is first swapped for a same-length `___` name
(remembered by its position); a swapped name that ends up anywhere else is
refused. So in text put spaces around a binary minus: `2-m.outputs[0]` names a
model `2-m`. The walk refuses every node outside the grammar, with its column.
"""

from __future__ import annotations

import ast
import re
from typing import Any

from engine.errors import ExpressionError
from engine.expressions.nodes import (
    KINDS,
    MAX_DEPTH,
    MODEL_NAME,
    BinaryOp,
    Expression,
    Function,
    Literal,
    UnaryOp,
    UnaryOpName,
    Variable,
    fail,
    is_index,
    require,
)

MAX_TEXT = 4000
"""Longest expression text accepted (longer is refused before parsing)."""

_SCAN = re.compile(
    r"""(?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")"""
    r"|(?<![\w.])(?P<model>[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)"
    r"(?=\.(?:inputs|outputs)\b)"
)
"""String literals (skipped) and model names before .inputs/.outputs (swapped)."""
_OPERATORS: dict[type, str] = {
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.Div: "/",
    ast.BitAnd: "&",
    ast.BitOr: "|",
}
_NOT_ALLOWED = {
    "JoinedStr": "f-strings",
    "Lambda": "lambda",
    "ListComp": "comprehensions",
    "SetComp": "comprehensions",
    "DictComp": "comprehensions",
    "GeneratorExp": "generators",
    "NamedExpr": ":=",
    "IfExp": "if/else",
}
_ALLOWED = (
    "allowed: <model>.inputs/outputs[field][i]..., numbers, strings, True/False, "
    "< <= > >= == != + - * / & | ~ unary -, abs(x), x.one_of(v, ...)"
)


def parse(text: str) -> Expression:
    """Parse the text form (see `to_text`) safely; anything outside the grammar raises
    ExpressionError, with the column where the text goes wrong."""
    require(isinstance(text, str), f"expression text must be a string, found {type(text).__name__}")
    require(len(text) <= MAX_TEXT, f"expression text is longer than {MAX_TEXT} characters")
    spaced = re.sub(r"[\t\n\r\f\v]", " ", text)
    source = spaced.lstrip(" ")
    base = len(spaced) - len(source)
    models = {
        found.start(): found.group("model")
        for found in _SCAN.finditer(source)
        if found.group("model")
    }
    for start, name in models.items():
        source = source[:start] + "_" * len(name) + source[start + len(name) :]
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as exc:
        fail(f"invalid expression syntax: {exc.msg}", base + max((exc.offset or 1) - 1, 0))
    except (ValueError, MemoryError, RecursionError) as exc:
        fail(f"invalid expression: {type(exc).__name__}: {str(exc)[:80]}")
    walker = _Walker(source, base, models)
    try:
        expr = walker.expression(tree.body)
    except RecursionError:
        fail(f"expression nests deeper than {MAX_DEPTH} levels")
    for start in sorted(set(models) - walker.used):
        fail(
            "a model reference inside this string literal form is not supported: use plain "
            "'...' or \"...\"",
            base + start,
        )
    return expr


class _Walker:
    """Turns a whitelisted Python syntax tree into an Expression; anything else fails with
    its column."""

    def __init__(self, source: str, base: int, models: dict[int, str]) -> None:
        self.source = source
        self.base = base
        """Columns in `source` are this far from those of the text as given."""
        self.models = models
        """Model names by where they start in `source`."""
        self.used: set[int] = set()
        """Where the model names the walk met start."""

    def column(self, node: ast.AST, end_minus: int | None = None) -> int:
        """The character column of `node` (ast counts UTF-8 bytes)."""
        if end_minus is None:
            at = node.col_offset  # type: ignore[attr-defined]
        else:
            at = node.end_col_offset - end_minus  # type: ignore[attr-defined]
        encoded = self.source.encode("utf-8", "surrogatepass")[:at]
        return len(encoded.decode("utf-8", "ignore"))

    def need(
        self, condition: object, node: ast.AST, message: str, end_minus: int | None = None
    ) -> None:
        if not condition:
            fail(message, self.base + self.column(node, end_minus))

    def expression(self, node: ast.AST, depth: int = 0) -> Expression:
        self.need(depth <= MAX_DEPTH, node, f"expression nests deeper than {MAX_DEPTH} levels")
        try:
            return self._node(node, depth + 1)
        except ExpressionError as exc:
            # A node's own check failed (it has no column yet): point at this node.
            self.need(getattr(exc, "col_offset", None) is not None, node, str(exc))
            raise

    def _node(self, node: ast.AST, depth: int) -> Expression:
        if isinstance(node, (ast.Compare, ast.BinOp)):
            return self.binary(node, depth)
        if isinstance(node, ast.UnaryOp):
            return self.unary(node, depth)
        if isinstance(node, ast.Call):
            return self.call(node, depth)
        if isinstance(node, (ast.Subscript, ast.Attribute)):
            return self.variable(node)
        if isinstance(node, ast.Constant):
            self.need(
                type(node.value) in (bool, int, float, str),
                node,
                f"constant {type(node.value).__name__} is not allowed",
            )
            return Literal(node.value)  # type: ignore[arg-type]  # need() checked its type
        self.need(
            not isinstance(node, ast.BoolOp),
            node,
            "'and'/'or' are not allowed: use & and | with parentheses",
        )
        self.need(
            not isinstance(node, ast.Name),
            node,
            f"name {getattr(node, 'id', '')!r} is not allowed; {_ALLOWED}",
        )
        what = type(node).__name__
        fail(
            f"{_NOT_ALLOWED.get(what, what)} not allowed; {_ALLOWED}", self.base + self.column(node)
        )

    def binary(self, node: ast.Compare | ast.BinOp, depth: int) -> Expression:
        ops: list[ast.cmpop] | list[ast.operator]
        if isinstance(node, ast.Compare):
            ops, left, rights = node.ops, node.left, node.comparators
        else:
            ops, left, rights = [node.op], node.left, [node.right]
        self.need(
            len(ops) == 1, node, "chained comparisons are not allowed: write (a < b) & (b < c)"
        )
        self.need(
            type(ops[0]) in _OPERATORS,
            node,
            f"operator {type(ops[0]).__name__} is not allowed; {_ALLOWED}",
        )
        return BinaryOp(
            _OPERATORS[type(ops[0])],  # type: ignore[arg-type]
            self.expression(left, depth),
            self.expression(rights[0], depth),
        )

    def unary(self, node: ast.UnaryOp, depth: int) -> Expression:
        self.need(
            isinstance(node.op, (ast.USub, ast.Invert)),
            node,
            f"unary {type(node.op).__name__} is not allowed: use ~ or -",
        )
        operand = node.operand
        if (
            isinstance(node.op, ast.USub)
            and isinstance(operand, ast.Constant)
            and type(operand.value) in (int, float)
        ):
            # A negative number, not a negation (the value is an int or float: checked above).
            return Literal(-operand.value)  # type: ignore[operator, arg-type]
        op: UnaryOpName = "neg" if isinstance(node.op, ast.USub) else "not"
        return UnaryOp(op, self.expression(operand, depth))

    def call(self, node: ast.Call, depth: int) -> Expression:
        self.need(
            not node.keywords,
            node.keywords[0] if node.keywords else node,
            "keyword arguments are not allowed",
        )
        for arg in node.args:
            self.need(not isinstance(arg, ast.Starred), arg, "starred arguments are not allowed")
        function = node.func
        if isinstance(function, ast.Name) and function.id == "abs":
            self.need(
                len(node.args) == 1, node, f"abs takes exactly one argument, found {len(node.args)}"
            )
            return Function("abs", (self.expression(node.args[0], depth),))
        if isinstance(function, ast.Attribute) and function.attr == "one_of":
            self.need(node.args, node, "one_of needs at least one value")
            values = tuple(self.expression(arg, depth) for arg in node.args)
            for arg, value in zip(node.args, values):
                self.need(
                    isinstance(value, Literal),
                    arg,
                    "one_of values must be literal numbers, strings or True/False",
                )
            return Function("one_of", (self.expression(function.value, depth), *values))
        if isinstance(function, ast.Name):
            what = repr(function.id)
        elif isinstance(function, ast.Attribute):
            what = f"'.{function.attr}'"
        else:
            what = "this"
        fail(
            f"calling {what} is not allowed: only abs(x) and x.one_of(v, ...)",
            self.base + self.column(node),
        )

    def variable(self, node: ast.expr) -> Variable:
        subscripts: list[ast.expr] = []
        while isinstance(node, ast.Subscript):
            subscripts.insert(0, node.slice)
            node = node.value
        self.need(
            isinstance(node, ast.Attribute),
            node,
            f"only <model>.inputs/outputs can be indexed; {_ALLOWED}",
        )
        assert isinstance(node, ast.Attribute)
        self.need(
            node.attr in KINDS,
            node,
            f"attribute {node.attr!r} is not allowed: only "
            "<model>.inputs, <model>.outputs and .one_of(...)",
            end_minus=len(node.attr),
        )
        at = self.column(node.value)
        self.need(
            isinstance(node.value, ast.Name) and at in self.models,
            node,
            f".{node.attr} must follow a model name matching {MODEL_NAME.pattern}",
        )
        self.need(subscripts, node, f'pick a field: {node.attr}[0] or {node.attr}["name"]')
        keys: list[Any] = []  # ints, or a str first: need() checks each
        for position, subscript in enumerate(subscripts):
            constant = isinstance(subscript, ast.Constant)
            value = subscript.value if constant else None  # type: ignore[attr-defined]
            found = repr(value)[:40] if constant else type(subscript).__name__
            self.need(
                is_index(value) or (position == 0 and type(value) is str and value),
                subscript,
                "index must be a non-negative int"
                f"{' or a field name' if position == 0 else ''}, found {found}",
            )
            keys.append(value)
        self.used.add(at)
        return Variable(
            self.models[at],
            node.attr,  # type: ignore[arg-type]  # in KINDS: checked
            keys[0],
            tuple(keys[1:]),
        )
