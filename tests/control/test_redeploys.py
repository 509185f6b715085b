"""control/redeploys.py: which version a redeploy swaps from, and what it restores on failure."""

from __future__ import annotations

from control.records import Deployment
from control.redeploys import Swap, swap_to


def _deployment(version: str) -> Deployment:
    return Deployment(
        workspace="default",
        pipeline="p",
        version=version,
        worker_ids=[f"p-{version}-0", f"p-{version}-1"],
    )


V1, V2, V3 = _deployment("v1"), _deployment("v2"), _deployment("v3")


def test_a_redeploy_swaps_from_what_serves() -> None:
    swap = swap_to(V2, V1, None)
    assert (swap.new, swap.previous, swap.old_ids) == (V2, V1, V1.worker_ids)


def test_superseding_a_half_started_redeploy_retires_it_and_restores_the_one_before() -> None:
    starting = Swap(V2, V1, list(V1.worker_ids))
    swap = swap_to(V3, V2, starting)
    assert swap.previous == V1
    assert swap.old_ids == [*V1.worker_ids, *V2.worker_ids]


def test_superseding_a_redeploy_that_hands_over_swaps_from_its_new_version() -> None:
    """v1 is already stopping: if v3 fails, v2 (which serves) is restored, not v1."""
    handing_over = Swap(V2, V1, list(V1.worker_ids), handing_over=True)
    swap = swap_to(V3, V2, handing_over)
    assert (swap.previous, swap.old_ids) == (V2, V2.worker_ids)
