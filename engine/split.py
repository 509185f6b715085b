"""Split selection for A/B tests: which model answers each row.

Pure and seeded: `choose_weighted` draws per row from normalised weights;
`choose_by_key` maps each row's key into [0, 1) (a float key in [0, 1) is used
as is, as the guide describes; anything else is hashed), so a key always
reaches the same model for the same weights, across restarts.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from engine.errors import SplitError


def normalise(weights: Sequence[float]) -> np.ndarray:
    """Weights as cumulative bounds in (0, 1]; every weight must be a positive number."""
    values = np.asarray(weights, dtype=np.float64)
    if values.size == 0:
        raise SplitError("a split needs at least one model")
    if not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise SplitError(f"split weights must be positive numbers, got {list(weights)}")
    bounds: np.ndarray = np.cumsum(values) / values.sum()
    bounds[-1] = 1.0
    return bounds


def _pick(bounds: np.ndarray, draws: np.ndarray) -> np.ndarray:
    return np.searchsorted(bounds, draws, side="right").astype(np.int32)


def choose_weighted(weights: Sequence[float], n: int, rng: np.random.Generator) -> np.ndarray:
    """The chosen model index for each of `n` rows, drawn at random by weight."""
    return _pick(normalise(weights), rng.random(n))


def key_to_unit(key: object) -> float:
    """A key's place in [0, 1): floats already there stay; anything else is hashed uniformly."""
    if isinstance(key, float) and 0.0 <= key < 1.0:
        return key
    if key is None:
        raise SplitError("a row has no value for the split's hash_key; every row needs one")
    digest = hashlib.blake2b(repr(key).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def choose_by_key(weights: Sequence[float], keys: Sequence[object]) -> np.ndarray:
    """The chosen model index for each row, fixed by the row's key."""
    draws = np.fromiter((key_to_unit(k) for k in keys), dtype=np.float64, count=len(keys))
    return _pick(normalise(weights), draws)
