"""Where expressions start: a model's tensors, named for building validations.

inputs, outputs = model_refs("anomaly-housing")
validation = outputs[0][0] < 100.0
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, NoReturn

import numpy as np

from engine.expressions.nodes import Kind, Variable, check_model, fail, is_index, require


@dataclass(frozen=True)
class FieldRefs:
    """`refs[0]` or `refs["dense_1"]` gives a Variable for one input or output field."""

    model: str
    kind: Kind

    def __getitem__(self, field: object) -> Variable:
        field = field.item() if isinstance(field, np.integer) else field
        require(
            is_index(field) or type(field) is str,
            f"{self.model}.{self.kind}[...] needs an "
            f"int position or a field name, found {field!r:.40}",
        )
        return Variable(self.model, self.kind, field)  # type: ignore[arg-type]

    def __iter__(self) -> NoReturn:
        fail(f"{self.model}.{self.kind} cannot be iterated: index a field, e.g. [0]")


class TensorRefs(NamedTuple):
    """A model's tensors for building validations: `refs.outputs[0][0] < 100.0`;
    unpacks as (inputs, outputs)."""

    inputs: FieldRefs
    outputs: FieldRefs


def model_refs(model_name: str) -> TensorRefs:
    """`inputs, outputs = model_refs("m")`; then `outputs[0][0] < 1.0` is a validation."""
    check_model(model_name)
    return TensorRefs(FieldRefs(model_name, "inputs"), FieldRefs(model_name, "outputs"))
