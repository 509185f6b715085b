"""The root of weir's errors and the ones raised by pure compute.

Every message is built from facts and says how to fix the problem. The HTTP
server maps these classes to status codes in one table, so nothing here knows
about HTTP.
"""

from __future__ import annotations


class WeirError(Exception):
    """Root of every error weir raises on purpose."""


class CodecError(WeirError):
    """A payload could not be decoded or encoded (malformed bytes, wrong shape)."""


class ExpressionError(WeirError):
    """A validation expression is malformed, unsafe, or names something unknown."""


class UnknownRuntime(WeirError):
    """A model asked for a runtime weir does not have."""

    def __init__(self, name: str, valid: list[str]) -> None:
        super().__init__(f"unknown runtime {name!r}: choose one of {', '.join(sorted(valid))}")
        self.name = name


class ModelLoadError(WeirError):
    """A model file could not be loaded (bad bytes, sha mismatch, import failure)."""


class InputMismatch(WeirError):
    """A batch does not carry what a model step needs (missing column, wrong shape)."""


class StepFailed(WeirError):
    """User code or a model raised while processing a batch."""

    def __init__(self, step: str, reason: str) -> None:
        super().__init__(f"step {step!r} failed: {reason}")
        self.step = step
        self.reason = reason


class SplitError(WeirError):
    """A split's weights or keys are unusable."""
