"""An expression's JSON form, read back strictly: what a pipeline definition stores.

`Expression.to_json()` writes `{"type": <node type>, <fields>}` with children nested
the same way; `from_json` accepts exactly that and nothing else (unknown types or
keys, wrong kinds of values, nesting deeper than MAX_DEPTH), raising ExpressionError.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from engine.expressions.nodes import MAX_DEPTH, NODE_TYPES, Expression, fail, require

_BY_TYPE = {name: cls for cls, name in NODE_TYPES.items()}
_LISTS = ("index", "args")
_CHILDREN = ("left", "right", "operand")


def from_json(data: object, _depth: int = 0) -> Expression:
    """Rebuild an expression from `to_json()` output, strictly: anything unknown raises
    ExpressionError."""
    require(_depth <= MAX_DEPTH, f"expression nests deeper than {MAX_DEPTH} levels")
    if not isinstance(data, dict):
        fail(f"expression node must be a JSON object, found {type(data).__name__}")
    node_type = data.get("type")
    require(
        isinstance(node_type, str) and node_type in _BY_TYPE,
        f"unknown expression node type {node_type!r:.40}: allowed are {', '.join(_BY_TYPE)}",
    )
    cls = _BY_TYPE[node_type]  # type: ignore[index]
    keys = ["type", *(field.name for field in fields(cls))]  # type: ignore[arg-type]
    require(
        set(data) == set(keys),
        f"{node_type} node must have keys {sorted(keys)}, found {sorted(map(str, data))}",
    )
    values: dict[str, Any] = {key: data[key] for key in keys[1:]}
    for key in _LISTS:
        if key in values:
            require(
                isinstance(values[key], list),
                f"{node_type} {key} must be a list, found {type(values[key]).__name__}",
            )
            items = values[key]
            values[key] = (
                tuple(from_json(item, _depth + 1) for item in items)
                if key == "args"
                else tuple(items)
            )
    for key in _CHILDREN:
        if key in values:
            values[key] = from_json(values[key], _depth + 1)
    return cls(**values)
