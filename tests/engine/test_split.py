"""engine/split.py: proportions, stickiness, and bad weights."""

from __future__ import annotations

import numpy as np
import pytest

from engine.errors import SplitError
from engine.split import choose_by_key, choose_weighted, key_to_unit, normalise


def test_two_to_one_lands_within_two_points() -> None:
    chosen = choose_weighted([2, 1], 10_000, np.random.default_rng(0))
    share = np.bincount(chosen, minlength=2) / 10_000
    assert abs(share[0] - 2 / 3) < 0.02 and abs(share[1] - 1 / 3) < 0.02


def test_three_way_split_uses_every_model() -> None:
    chosen = choose_weighted([1, 1, 2], 10_000, np.random.default_rng(1))
    share = np.bincount(chosen, minlength=3) / 10_000
    np.testing.assert_allclose(share, [0.25, 0.25, 0.5], atol=0.02)


def test_a_key_always_reaches_the_same_model() -> None:
    keys = [f"customer-{i}" for i in range(2000)]
    first = choose_by_key([2, 1], keys)
    assert np.array_equal(first, choose_by_key([2, 1], list(reversed(keys)))[::-1])
    share = np.bincount(first, minlength=2) / len(keys)
    assert abs(share[0] - 2 / 3) < 0.04


@pytest.mark.parametrize(("key", "model"), [(0.1, 0), (0.4, 0), (0.6, 1), (0.99, 1)])
def test_float_keys_in_the_unit_interval_are_used_as_is(key: float, model: int) -> None:
    """The guide: with equal weights, 0.4 goes to the first model and 0.6 to the second."""
    assert choose_by_key([1, 1], [key])[0] == model


def test_other_keys_are_hashed_stably() -> None:
    assert key_to_unit(42) == key_to_unit(42)
    assert key_to_unit("a") != key_to_unit("b")
    assert 0 <= key_to_unit(1.5) < 1


@pytest.mark.parametrize("weights", [[], [1, 0], [1, -2], [float("nan"), 1]])
def test_bad_weights_are_refused(weights: list[float]) -> None:
    with pytest.raises(SplitError):
        normalise(weights)


def test_a_missing_key_is_refused() -> None:
    with pytest.raises(SplitError, match="hash_key"):
        choose_by_key([1, 1], [None])
