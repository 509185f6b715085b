"""SliceSizer: each model's onnxruntime slice size, chosen from its own timed chunks."""

from __future__ import annotations

import logging

import pytest

from engine.runtimes._slices import TRIALS, WARM_UP_CHUNKS, SliceSizer

CHUNK = 4096


def _warmed(candidates: tuple[int, ...] = (256, 1024)) -> SliceSizer:
    sizer = SliceSizer("m", candidates=candidates)
    for _ in range(WARM_UP_CHUNKS):
        assert sizer.slice_rows(CHUNK) == max(candidates)  # as before: untimed
        sizer.ran(CHUNK, 1.0)
    return sizer


def _run_chunks(sizer: SliceSizer, seconds_per_row: dict[int, float], chunks: int) -> None:
    for _ in range(chunks):
        sizer.ran(CHUNK, CHUNK * seconds_per_row[sizer.slice_rows(CHUNK)])


def test_a_chunk_smaller_than_the_biggest_candidate_runs_in_one_call_untimed() -> None:
    sizer = _warmed()
    for _ in range(5 * TRIALS):
        assert sizer.slice_rows(256) == 256  # a lone 256-row message: cold, so not timed
        sizer.ran(256, 1.0)
    assert sizer.slice_rows(100) == 100
    assert sizer.slice_rows(0) == 1  # an empty chunk is still one call
    assert sizer.chosen is None


def test_big_chunks_try_the_candidates_in_turn_after_the_first_few() -> None:
    sizer = _warmed()
    tried = []
    for _ in range(4):
        tried.append(sizer.slice_rows(CHUNK))
        sizer.ran(CHUNK, 0.02)
    assert tried == [256, 1024, 256, 1024]
    assert sizer.chosen is None


@pytest.mark.parametrize(
    ("seconds_per_row", "chosen"),
    [({256: 5.2e-6, 1024: 5.6e-6}, 256), ({256: 2.6e-8, 1024: 1.0e-8}, 1024)],
    ids=["a heavy model: small slices", "a cheap model: big slices"],
)
def test_the_candidate_with_the_least_time_per_row_is_chosen_and_kept(
    seconds_per_row: dict[int, float], chosen: int, caplog: pytest.LogCaptureFixture
) -> None:
    sizer = _warmed(tuple(seconds_per_row))
    with caplog.at_level(logging.INFO, logger="engine.runtimes._slices"):
        _run_chunks(sizer, seconds_per_row, 2 * TRIALS)
    assert sizer.chosen == chosen
    assert f"model m runs in slices of {chosen} rows" in caplog.text
    for _ in range(3 * TRIALS):  # later chunks, however slow, change nothing
        assert sizer.slice_rows(CHUNK) == chosen
        sizer.ran(CHUNK, 100.0)
    assert sizer.slice_rows(300) == chosen  # small chunks too, once chosen
    assert sizer.chosen == chosen


def test_a_few_slowed_chunks_do_not_decide() -> None:
    sizer = _warmed()
    slow = 3  # chunks of 256-row slices slowed by another process taking the core
    for _ in range(2 * TRIALS):
        rows = sizer.slice_rows(CHUNK)
        per_row = 5.2e-6 if rows == 256 else 5.6e-6
        if rows == 256 and slow:
            per_row, slow = 1e-3, slow - 1
        sizer.ran(CHUNK, CHUNK * per_row)
    assert sizer.chosen == 256
