"""Validation expressions as data: a small AST built by operators, parsed safely, evaluated with numpy.

An expression states the VALID condition; rows where it is False fail the check::

    inputs, outputs = model_refs("anomaly-housing")
    expr = outputs[0][0] < 100.0         # to_text(expr) == "anomaly-housing.outputs[0][0] < 100.0"
    ok = check(expr, {"anomaly-housing": {"inputs": {...}, "outputs": {"dense_1": arr}}})

Text is read by ``ast.parse`` plus a strict whitelist walk, never eval'd. Model names may contain ``-``, so
in text put spaces around a binary minus: ``2-m.outputs[0]`` names a model ``2-m``.
"""

from __future__ import annotations

import ast
import json
import math
import re
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from functools import reduce

import numpy as np

from engine.errors import ExpressionError

Kind = typing.Literal["inputs", "outputs"]
BinaryOpName = typing.Literal["<", "<=", ">", ">=", "==", "!=", "+", "-", "*", "/", "&", "|"]
UnaryOpName = typing.Literal["neg", "not"]
FunctionName = typing.Literal["abs", "one_of"]
Scalar = bool | int | float | str
Tensors = Mapping[str, Mapping[str, "Sequence[np.ndarray] | Mapping[str, np.ndarray]"]]

MODEL_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?")
MAX_DEPTH = 100
MAX_TEXT = 4000
_KINDS: tuple[str, ...] = typing.get_args(Kind)
_BIN_OPS: tuple[str, ...] = typing.get_args(BinaryOpName)
_UN_OPS: tuple[str, ...] = typing.get_args(UnaryOpName)
_FUNCS: tuple[str, ...] = typing.get_args(FunctionName)
_CMP, _ARITH, _LOGIC = _BIN_OPS[:6], _BIN_OPS[6:10], _BIN_OPS[10:]
_PREC = {**dict.fromkeys(_CMP, 1), "|": 2, "&": 3, "+": 4, "-": 4, "*": 5, "/": 5}
_UNARY_PREC, _ATOM = 6, 7


def _fail(msg: str, col: int | None = None) -> typing.NoReturn:
    err = ExpressionError(msg if col is None else f"{msg} (at column {col})")
    err.col_offset = col  # type: ignore[attr-defined]
    raise err


def _check(ok: object, msg: str) -> None:
    if not ok:
        _fail(msg)


def _is_index(v: object) -> bool:
    return type(v) is int and v >= 0


def _binop(op: str, reflected: bool = False) -> typing.Callable[[Expression, object], BinaryOp]:
    def method(self: Expression, other: object) -> BinaryOp:
        o = _lift(other)
        return BinaryOp(op, o, self) if reflected else BinaryOp(op, self, o)  # type: ignore[arg-type]
    return method


class Expression:
    """Base of every node. Operators build new nodes; ``same_as`` compares structure; hashing is by identity."""

    __array_ufunc__ = None  # numpy scalars on the left defer to our reflected operators

    __lt__, __le__, __gt__, __ge__ = _binop("<"), _binop("<="), _binop(">"), _binop(">=")
    __eq__, __ne__ = _binop("=="), _binop("!=")  # type: ignore[assignment]
    __hash__ = object.__hash__  # identity: == builds a node, so a structural hash would lie
    __add__, __radd__, __sub__, __rsub__ = _binop("+"), _binop("+", True), _binop("-"), _binop("-", True)
    __mul__, __rmul__, __truediv__, __rtruediv__ = _binop("*"), _binop("*", True), _binop("/"), _binop("/", True)
    __and__, __rand__, __or__, __ror__ = _binop("&"), _binop("&", True), _binop("|"), _binop("|", True)

    def __neg__(self) -> Expression: return UnaryOp("neg", self)
    def __invert__(self) -> Expression: return UnaryOp("not", self)
    def __abs__(self) -> Expression: return Function("abs", (self,))

    def one_of(self, *values: Scalar) -> Function:
        """True where the value equals one of ``values``, e.g. ``m.outputs[0][0].one_of(1, 2)``."""
        _check(values, "one_of needs at least one value, e.g. x.one_of(1, 2)")
        return Function("one_of", (self, *(_lift(v, literal_only=True) for v in values)))

    def __bool__(self) -> bool:
        _fail(f"{to_text(self)!r} has no truth value: use & | ~ instead of and/or/not, "
              "and (a < b) & (b < c) instead of a < b < c")

    def __iter__(self) -> typing.NoReturn:
        _fail(f"{to_text(self)!r} cannot be iterated: index it (m.outputs[0][0]) or use x.one_of(...)")

    def to_json(self) -> dict[str, typing.Any]:
        """The node as JSON data: ``{"type": ..., <fields>}`` with children nested the same way."""
        out: dict[str, typing.Any] = {"type": _TYPE_NAMES[type(self)]}
        for f in fields(self):  # type: ignore[arg-type]
            v = getattr(self, f.name)
            out[f.name] = v.to_json() if isinstance(v, Expression) else (
                [a.to_json() if isinstance(a, Expression) else a for a in v] if isinstance(v, tuple) else v)
        return out

    def same_as(self, other: object) -> bool:
        """Structural equality, exact on types (1, 1.0 and True differ)."""
        return isinstance(other, Expression) and _canon(self) == _canon(other)

    def __str__(self) -> str:
        return to_text(self)


def _canon(e: Expression) -> str:
    return json.dumps(e.to_json(), sort_keys=True)


def _lift(v: object, literal_only: bool = False) -> Expression:
    v = v.item() if isinstance(v, np.generic) else v
    if isinstance(v, Literal if literal_only else Expression):
        return v  # type: ignore[return-value]
    want = "a number, bool or string" + ("" if literal_only else ", or another expression")
    _check(type(v) in (bool, int, float, str), f"cannot use {type(v).__name__} {v!r:.40} in an expression: use {want}")
    return Literal(v)  # type: ignore[arg-type]


def _check_model(model: object) -> None:
    _check(isinstance(model, str) and MODEL_NAME.fullmatch(model),
           f"model name must match {MODEL_NAME.pattern}, found {model!r:.60}")


@dataclass(frozen=True, eq=False)
class Variable(Expression):
    """A model tensor ``model.kind[field][index...]``; ``index`` picks inside each row."""

    model: str
    kind: Kind
    field: int | str
    index: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        _check_model(self.model)
        _check(self.kind in _KINDS, f"variable kind must be one of {', '.join(_KINDS)}, found {self.kind!r:.40}")
        _check(_is_index(self.field) or (type(self.field) is str and self.field),
               f"field must be a non-negative int or a non-empty name, found {self.field!r:.60}")
        _check(type(self.index) is tuple and all(map(_is_index, self.index)),
               f"index must be a tuple of non-negative ints, found {self.index!r:.60}")

    def __getitem__(self, j: object) -> Variable:
        j = j.item() if isinstance(j, np.integer) else j
        _check(_is_index(j), f"{to_text(self)}[...] needs a non-negative int index, found {type(j).__name__} {j!r:.40}")
        return Variable(self.model, self.kind, self.field, (*self.index, j))  # type: ignore[arg-type]


@dataclass(frozen=True, eq=False)
class Literal(Expression):
    """A constant: finite number, bool or string."""

    value: Scalar

    def __post_init__(self) -> None:
        _check(type(self.value) in (bool, int, float, str),
               f"literal must be a number, bool or string, found {type(self.value).__name__}")
        _check(type(self.value) is not float or math.isfinite(self.value),  # type: ignore[arg-type]
               f"literal numbers must be finite, found {self.value!r}")
        _check(type(self.value) is not int or self.value.bit_length() <= 1000,  # type: ignore[union-attr]
               "integer literals must fit in 1000 bits")

    def __neg__(self) -> Expression:
        return Literal(-self.value) if type(self.value) in (int, float) else super().__neg__()  # type: ignore[operator]


@dataclass(frozen=True, eq=False)
class BinaryOp(Expression):
    """``left op right``: a comparison, arithmetic, ``&`` or ``|``."""

    op: BinaryOpName
    left: Expression
    right: Expression

    def __post_init__(self) -> None:
        _check(self.op in _BIN_OPS, f"binary operator must be one of {' '.join(_BIN_OPS)}, found {self.op!r:.40}")
        _check(isinstance(self.left, Expression) and isinstance(self.right, Expression),
               "binary operands must be expressions")


@dataclass(frozen=True, eq=False)
class UnaryOp(Expression):
    """``-operand`` (neg) or ``~operand`` (not)."""

    op: UnaryOpName
    operand: Expression

    def __post_init__(self) -> None:
        _check(self.op in _UN_OPS, f"unary operator must be one of {', '.join(_UN_OPS)}, found {self.op!r:.40}")
        _check(isinstance(self.operand, Expression), "unary operand must be an expression")
        _check(self.op != "neg" or not isinstance(self.operand, Literal),
               f"do not negate a literal ({getattr(self.operand, 'value', None)!r}): write the negative number")


@dataclass(frozen=True, eq=False)
class Function(Expression):
    """``abs(x)`` or ``x.one_of(v1, v2, ...)`` (args[0] is x, the rest are literals)."""

    name: FunctionName
    args: tuple[Expression, ...]

    def __post_init__(self) -> None:
        _check(self.name in _FUNCS, f"function must be one of {', '.join(_FUNCS)}, found {self.name!r:.40}")
        _check(type(self.args) is tuple and all(isinstance(a, Expression) for a in self.args),
               f"{self.name} arguments must be a tuple of expressions")
        _check(self.name != "abs" or len(self.args) == 1, f"abs takes exactly one argument, found {len(self.args)}")
        _check(self.name != "one_of" or (len(self.args) >= 2 and all(isinstance(a, Literal) for a in self.args[1:])),
               "one_of takes an expression and at least one literal value")


_TYPE_NAMES = {Variable: "variable", Literal: "literal", BinaryOp: "binary", UnaryOp: "unary", Function: "function"}
_NODES = {name: cls for cls, name in _TYPE_NAMES.items()}


def _children(e: Expression) -> tuple[Expression, ...]:
    return tuple(c for f in fields(e) for v in [getattr(e, f.name)]  # type: ignore[arg-type]
                 for c in (v if isinstance(v, tuple) else (v,)) if isinstance(c, Expression))


@dataclass(frozen=True)
class FieldRefs:
    """``refs[0]`` or ``refs["dense_1"]`` gives a Variable for one input or output field."""

    model: str
    kind: Kind

    def __getitem__(self, field: object) -> Variable:
        field = field.item() if isinstance(field, np.integer) else field
        _check(_is_index(field) or type(field) is str,
               f"{self.model}.{self.kind}[...] needs an int position or a field name, found {field!r:.40}")
        return Variable(self.model, self.kind, field)  # type: ignore[arg-type]

    def __iter__(self) -> typing.NoReturn:
        _fail(f"{self.model}.{self.kind} cannot be iterated: index a field, e.g. [0]")


class TensorRefs(typing.NamedTuple):
    """A model's tensors for building validations: ``refs.outputs[0][0] < 100.0``; unpacks as (inputs, outputs)."""

    inputs: FieldRefs
    outputs: FieldRefs


def model_refs(model_name: str) -> TensorRefs:
    """``inputs, outputs = model_refs("m")``; then ``outputs[0][0] < 1.0`` is a validation."""
    _check_model(model_name)
    return TensorRefs(FieldRefs(model_name, "inputs"), FieldRefs(model_name, "outputs"))


def from_json(data: object, _depth: int = 0) -> Expression:
    """Rebuild an expression from ``to_json()`` output, strictly: anything unknown raises ExpressionError."""
    _check(_depth <= MAX_DEPTH, f"expression nests deeper than {MAX_DEPTH} levels")
    if not isinstance(data, dict):
        _fail(f"expression node must be a JSON object, found {type(data).__name__}")
    t = data.get("type")
    _check(isinstance(t, str) and t in _NODES, f"unknown expression node type {t!r:.40}: allowed are {', '.join(_NODES)}")
    cls = _NODES[t]  # type: ignore[index]
    keys = ["type", *(f.name for f in fields(cls))]
    _check(set(data) == set(keys), f"{t} node must have keys {sorted(keys)}, found {sorted(map(str, data))}")
    kw = {k: data[k] for k in keys[1:]}
    for k in ("index", "args"):
        if k in kw:
            _check(isinstance(kw[k], list), f"{t} {k} must be a list, found {type(kw[k]).__name__}")
            kw[k] = tuple(from_json(a, _depth + 1) for a in kw[k]) if k == "args" else tuple(kw[k])
    for k in ("left", "right", "operand"):
        if k in kw:
            kw[k] = from_json(kw[k], _depth + 1)
    return cls(**kw)  # type: ignore[no-any-return]


def _quote(s: str) -> str:
    r = repr(s)
    return f'"{r[1:-1]}"' if r[0] == "'" and '"' not in s else r


def _text(e: Expression) -> tuple[str, int]:
    if isinstance(e, Variable):
        keys = (_quote(e.field) if isinstance(e.field, str) else str(e.field), *map(str, e.index))
        return f"{e.model}.{e.kind}" + "".join(f"[{k}]" for k in keys), _ATOM
    if isinstance(e, Literal):
        s = _quote(e.value) if isinstance(e.value, str) else repr(e.value)
        return s, (_UNARY_PREC if s.startswith("-") else _ATOM)
    if isinstance(e, UnaryOp):
        return ("-" if e.op == "neg" else "~") + _wrap(e.operand, _UNARY_PREC), _UNARY_PREC
    if isinstance(e, BinaryOp):
        p = _PREC[e.op]
        return f"{_wrap(e.left, p + 1 if e.op in _CMP else p)} {e.op} {_wrap(e.right, p + 1)}", p
    if isinstance(e, Function) and e.name == "abs":
        return f"abs({_text(e.args[0])[0]})", _ATOM
    if isinstance(e, Function):
        recv = _wrap(e.args[0], _ATOM) if isinstance(e.args[0], (Variable, Function)) else f"({_text(e.args[0])[0]})"
        return f"{recv}.one_of({', '.join(_text(a)[0] for a in e.args[1:])})", _ATOM
    _fail(f"not an expression node: {type(e).__name__}")


def _wrap(e: Expression, need: int) -> str:
    s, p = _text(e)
    return s if p >= need else f"({s})"


def to_text(expr: Expression) -> str:
    """The guide's text form, e.g. ``anomaly-housing.outputs[0][0] < 100.0``; ``parse`` reads it back."""
    return _text(expr)[0]


_SCAN = re.compile(r"""(?P<s>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")"""
                   r"|(?<![\w.])(?P<m>[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)(?=\.(?:inputs|outputs)\b)")
_AST_OPS: dict[type, str] = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!=",
                             ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.BitAnd: "&", ast.BitOr: "|"}
_AST_NAMES = {"JoinedStr": "f-strings", "Lambda": "lambda", "ListComp": "comprehensions", "SetComp": "comprehensions",
              "DictComp": "comprehensions", "GeneratorExp": "generators", "NamedExpr": ":=", "IfExp": "if/else"}
_ALLOWED = ("allowed: <model>.inputs/outputs[field][i]..., numbers, strings, True/False, "
            "< <= > >= == != + - * / & | ~ unary -, abs(x), x.one_of(v, ...)")


class _Walker:
    """Turns a whitelisted Python AST into an Expression; anything else fails with its column."""

    def __init__(self, src: str, base: int, models: dict[int, str]) -> None:
        self.src, self.base, self.models, self.used = src, base, models, set[int]()

    def col(self, node: ast.AST, end_minus: int | None = None) -> int:
        b = node.col_offset if end_minus is None else node.end_col_offset - end_minus  # type: ignore[attr-defined,operator]
        return len(self.src.encode("utf-8", "surrogatepass")[:b].decode("utf-8", "ignore"))

    def need(self, ok: object, node: ast.AST, msg: str, end_minus: int | None = None) -> None:
        if not ok:
            _fail(msg, self.base + self.col(node, end_minus))

    def expr(self, n: ast.AST, depth: int = 0) -> Expression:
        self.need(depth <= MAX_DEPTH, n, f"expression nests deeper than {MAX_DEPTH} levels")
        try:
            return self._expr(n, depth + 1)
        except ExpressionError as e:
            self.need(getattr(e, "col_offset", None) is not None, n, str(e))  # constructor errors get a column
            raise

    def _expr(self, n: ast.AST, d: int) -> Expression:
        if isinstance(n, (ast.Compare, ast.BinOp)):
            ops, left, rights = (n.ops, n.left, n.comparators) if isinstance(n, ast.Compare) else ([n.op], n.left, [n.right])
            self.need(len(ops) == 1, n, "chained comparisons are not allowed: write (a < b) & (b < c)")
            self.need(type(ops[0]) in _AST_OPS, n, f"operator {type(ops[0]).__name__} is not allowed; {_ALLOWED}")
            return BinaryOp(_AST_OPS[type(ops[0])], self.expr(left, d), self.expr(rights[0], d))  # type: ignore[arg-type]
        if isinstance(n, ast.UnaryOp):
            self.need(isinstance(n.op, (ast.USub, ast.Invert)), n, f"unary {type(n.op).__name__} is not allowed: use ~ or -")
            if isinstance(n.op, ast.USub) and isinstance(n.operand, ast.Constant) and type(n.operand.value) in (int, float):
                return Literal(-n.operand.value)  # type: ignore[operator]
            return UnaryOp("neg" if isinstance(n.op, ast.USub) else "not", self.expr(n.operand, d))
        if isinstance(n, ast.Call):
            return self.call(n, d)
        if isinstance(n, (ast.Subscript, ast.Attribute)):
            return self.variable(n)
        if isinstance(n, ast.Constant):
            self.need(type(n.value) in (bool, int, float, str), n, f"constant {type(n.value).__name__} is not allowed")
            return Literal(n.value)
        self.need(not isinstance(n, ast.BoolOp), n, "'and'/'or' are not allowed: use & and | with parentheses")
        self.need(not isinstance(n, ast.Name), n, f"name {getattr(n, 'id', '')!r} is not allowed; {_ALLOWED}")
        self.need(False, n, f"{_AST_NAMES.get(type(n).__name__, type(n).__name__)} not allowed; {_ALLOWED}")
        raise AssertionError  # unreachable

    def call(self, n: ast.Call, d: int) -> Expression:
        self.need(not n.keywords, n.keywords[0] if n.keywords else n, "keyword arguments are not allowed")
        for a in n.args:
            self.need(not isinstance(a, ast.Starred), a, "starred arguments are not allowed")
        f = n.func
        if isinstance(f, ast.Name) and f.id == "abs":
            self.need(len(n.args) == 1, n, f"abs takes exactly one argument, found {len(n.args)}")
            return Function("abs", (self.expr(n.args[0], d),))
        if isinstance(f, ast.Attribute) and f.attr == "one_of":
            self.need(n.args, n, "one_of needs at least one value")
            values = tuple(self.expr(a, d) for a in n.args)
            for a, v in zip(n.args, values):
                self.need(isinstance(v, Literal), a, "one_of values must be literal numbers, strings or True/False")
            return Function("one_of", (self.expr(f.value, d), *values))
        what = repr(f.id) if isinstance(f, ast.Name) else f"'.{f.attr}'" if isinstance(f, ast.Attribute) else "this"
        self.need(False, n, f"calling {what} is not allowed: only abs(x) and x.one_of(v, ...)")
        raise AssertionError  # unreachable

    def variable(self, n: ast.expr) -> Variable:
        subs: list[ast.expr] = []
        while isinstance(n, ast.Subscript):
            subs.insert(0, n.slice)
            n = n.value
        self.need(isinstance(n, ast.Attribute), n, f"only <model>.inputs/outputs can be indexed; {_ALLOWED}")
        assert isinstance(n, ast.Attribute)
        self.need(n.attr in _KINDS, n, f"attribute {n.attr!r} is not allowed: only <model>.inputs, <model>.outputs "
                  "and .one_of(...)", end_minus=len(n.attr))
        at = self.col(n.value)
        self.need(isinstance(n.value, ast.Name) and at in self.models, n,
                  f".{n.attr} must follow a model name matching {MODEL_NAME.pattern}")
        self.need(subs, n, f"pick a field: {n.attr}[0] or {n.attr}[\"name\"]")
        keys = []
        for i, s in enumerate(subs):
            v = s.value if isinstance(s, ast.Constant) else None
            found = repr(v)[:40] if isinstance(s, ast.Constant) else type(s).__name__
            self.need(_is_index(v) or (i == 0 and type(v) is str and v), s,
                      f"index must be a non-negative int{' or a field name' if i == 0 else ''}, found {found}")
            keys.append(v)
        self.used.add(at)
        return Variable(self.models[at], n.attr, keys[0], tuple(keys[1:]))  # type: ignore[arg-type]


def parse(text: str) -> Expression:
    """Parse the text form (see ``to_text``) safely; anything outside the grammar raises ExpressionError.

    Model names are swapped for same-length ``___`` names (remembered by position) so ``ast.parse`` accepts
    them; a swapped name that ends up anywhere but before ``.inputs``/``.outputs`` is refused.
    """
    _check(isinstance(text, str), f"expression text must be a string, found {type(text).__name__}")
    _check(len(text) <= MAX_TEXT, f"expression text is longer than {MAX_TEXT} characters")
    spaced = re.sub(r"[\t\n\r\f\v]", " ", text)
    src = spaced.lstrip(" ")
    base = len(spaced) - len(src)
    models = {m.start(): m.group("m") for m in _SCAN.finditer(src) if m.group("m")}
    for start, name in models.items():
        src = src[:start] + "_" * len(name) + src[start + len(name):]
    try:
        tree = ast.parse(src, mode="eval")
    except SyntaxError as e:
        _fail(f"invalid expression syntax: {e.msg}", base + max((e.offset or 1) - 1, 0))
    except (ValueError, MemoryError, RecursionError) as e:
        _fail(f"invalid expression: {type(e).__name__}: {str(e)[:80]}")
    walker = _Walker(src, base, models)
    try:
        expr = walker.expr(tree.body)
    except RecursionError:
        _fail(f"expression nests deeper than {MAX_DEPTH} levels")
    for start in sorted(set(models) - walker.used):
        _fail("a model reference inside this string literal form is not supported: use plain '...' or \"...\"",
              base + start)
    return expr


_UFUNCS = {"<": np.less, "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal, "==": np.equal,
           "!=": np.not_equal, "+": np.add, "-": np.subtract, "*": np.multiply, "/": np.true_divide,
           "&": np.logical_and, "|": np.logical_or, "neg": np.negative, "not": np.logical_not, "abs": np.abs}
_OPERAND_KINDS = {**dict.fromkeys((*_LOGIC, "not"), ("b", "true/false (compare first: (x < 1) & (y > 2))")),
                  **dict.fromkeys((*_ARITH, "neg", "abs"), ("iuf", "numeric"))}


def _lookup(v: Variable, tensors: Tensors) -> np.ndarray:
    name = to_text(v)
    _check(v.model in tensors, f"{name}: model {v.model!r} is not in this batch; "
           f"available models: {', '.join(map(repr, tensors)) or 'none'}")
    group = tensors[v.model].get(v.kind, {})
    if isinstance(group, Mapping):
        names = list(group)
        key = names[v.field] if isinstance(v.field, int) and v.field < len(names) else v.field
        avail = ", ".join(f"{i}: {k!r}" for i, k in enumerate(names)) or "none"
        _check(isinstance(key, str) and key in group, f"{name}: model {v.model!r} has no {v.kind} field "
               f"{v.field!r}; available: {avail}")
        arr = np.asarray(group[key])
    else:
        _check(isinstance(group, Sequence) and not isinstance(group, str) and isinstance(v.field, int)
               and v.field < len(group), f"{name}: model {v.model!r} has no {v.kind} field {v.field!r}; "
               f"its {v.kind} are {len(group)} unnamed tensors, use a position")
        arr = np.asarray(group[v.field])  # type: ignore[index]
    _check(arr.ndim >= 1 + len(v.index), f"{name}: tensor of shape {arr.shape} (rows first) has {max(arr.ndim - 1, 0)}"
           f" per-row dimension(s), cannot apply {len(v.index)} index(es)")
    for k, (i, size) in enumerate(zip(v.index, arr.shape[1:])):
        _check(i < size, f"{name}: index {i} is out of range for per-row dimension {k} of size {size} "
               f"(shape {arr.shape})")
    return arr[(slice(None), *v.index)]


def _eval(e: Expression, t: Tensors) -> typing.Any:
    if isinstance(e, Variable):
        return _lookup(e, t)
    if isinstance(e, Literal):
        return e.value
    args = [_eval(c, t) for c in _children(e)]
    key = e.name if isinstance(e, Function) else e.op  # type: ignore[attr-defined]
    kinds, what = _OPERAND_KINDS.get(key, ("", ""))
    for a in args if kinds else ():
        dt = np.asarray(a).dtype
        _check(dt.kind in kinds, f"{to_text(e)}: needs {what} operands, found {dt}")
    try:
        if key == "one_of":
            return reduce(np.logical_or, (np.equal(args[0], v) for v in args[1:]))
        return _UFUNCS[key](*args)
    except (TypeError, ValueError, OverflowError) as err:
        _fail(f"cannot evaluate {to_text(e)}: {err}")


def evaluate(expr: Expression, tensors: Tensors) -> np.ndarray:
    """Evaluate over ``{model: {"inputs": {field: arr}, "outputs": {...}}}`` (rows first), vectorised.

    Fields are dicts in model order (an int field picks the i-th, a str field by name) or plain sequences.
    Division by zero gives inf/nan silently; ordered comparisons and == with nan are False (!= is True).
    """
    with np.errstate(all="ignore"):
        return np.asarray(_eval(expr, tensors))


def check(expr: Expression, tensors: Tensors) -> np.ndarray:
    """Evaluate a validation: one bool per row, True where the row is valid, else ExpressionError."""
    result = evaluate(expr, tensors)
    _check(result.ndim == 1 and result.dtype == np.bool_, f"validation {to_text(expr)!r} must give one true/false"
           f" value per row, but gives {result.dtype} of shape {result.shape}; compare one value per row, e.g. "
           "m.outputs[0][0] < 100.0")
    return result


def models_referenced(expr: Expression) -> set[str]:
    """Names of every model the expression reads (deploy rejects ones not in the pipeline)."""
    if isinstance(expr, Variable):
        return {expr.model}
    return set().union(*map(models_referenced, _children(expr)))
