"""streams/log_policy.py: what log rows keep, so image and audio pipelines' logs stay small."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from engine.columns import META_DROPPED
from streams.log_policy import LogPolicy, row_bytes

IMAGE = 150_528  # a 224x224 RGB image's bytes


@pytest.mark.parametrize(
    ("column", "sizes"),
    [
        (pa.array([b"ab", None, b"abcd"]), [2, 0, 4]),
        (pa.array(["é", "abc"]), [2, 3]),
        (pa.array([[1.0, 2.0], [3.0], None], pa.list_(pa.float32())), [8, 4, 0]),
        (pa.array([[[1, 2], [3, 4]], [[5, 6]]], pa.list_(pa.list_(pa.int64(), 2))), [32, 16]),
        (pa.array([[1, 2], [3, 4], [5, 6]], pa.list_(pa.int64(), 2)).slice(1), [16, 16]),
        (pa.array([1, None, 3], pa.int32()), [4, 0, 4]),
        (pa.array([True, False]), [1, 1]),
        (pa.DictionaryArray.from_arrays(pa.array([0, 0]), pa.array(["abc"])), [3, 3]),
        (pa.array([[1.0, None], [3.0], []], pa.list_(pa.float32())), [4, 4, 0]),
        (
            pa.FixedSizeListArray.from_arrays(
                pa.array(np.arange(6, dtype=np.float32)), 2, mask=pa.array([False, True, False])
            ),
            [8, 0, 8],
        ),
        (pa.array([[True, False, True]], pa.list_(pa.bool_())), [3]),
        (pa.array([["ab", "c"], None], pa.list_(pa.string())), [3, 0]),
        (pa.array(list(np.ones((3, 512), np.float32)), pa.list_(pa.float32(), 512)), [2048] * 3),
    ],
    ids=[
        "binary",
        "string",
        "list",
        "nested",
        "sliced-fixed",
        "int32",
        "bool",
        "dictionary",
        "list-null-values",
        "fixed-null-row",
        "list-bools",
        "list-strings",
        "wide-tensor",
    ],
)
def test_row_bytes(column: pa.Array, sizes: list[int]) -> None:
    assert row_bytes(column).tolist() == sizes


def _rows(*image_sizes: int) -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict(
        {
            "in.png": pa.array([b"\x01" * n for n in image_sizes], pa.binary()),
            "in.caption": pa.array(["x" * 100] * len(image_sizes)),
            "out.label": pa.array(["cat"] * len(image_sizes)),
            "metadata.model": pa.array(["m"] * len(image_sizes)),
        }
    )


def test_the_default_drops_an_image_and_names_it() -> None:
    kept = LogPolicy().apply(_rows(IMAGE, 2_000))
    assert kept.column("in.png").to_pylist() == [None, b"\x01" * 2_000]
    assert kept.column("in.caption").to_pylist() == ["x" * 100] * 2
    assert kept.column(META_DROPPED).to_pylist() == [["in.png"], []]
    assert kept.column("out.label").to_pylist() == ["cat", "cat"]
    assert row_bytes(kept.column("in.png")).max() < 64 * 1024


def test_the_largest_inputs_go_first_and_only_as_many_as_needed() -> None:
    rows = _rows(1_000).append_column("in.audio", pa.array([b"\x00" * 3_000]))
    kept = LogPolicy(max_row_bytes=2_000).apply(rows)
    assert kept.column(META_DROPPED).to_pylist() == [["in.audio"]]
    assert kept.column("in.png").to_pylist() == [b"\x01" * 1_000]
    both = LogPolicy(max_row_bytes=500).apply(rows)
    assert both.column(META_DROPPED).to_pylist() == [["in.png", "in.audio"]]  # in column order
    assert both.column("in.caption").to_pylist() == ["x" * 100]


def test_outputs_are_kept_even_when_dropping_every_input_is_not_enough() -> None:
    rows = _rows(10).append_column("out.mask", pa.array([b"\x00" * 5_000]))
    kept = LogPolicy(max_row_bytes=1_000).apply(rows)
    assert kept.column(META_DROPPED).to_pylist() == [["in.png", "in.caption"]]
    assert kept.column("out.mask").to_pylist() == [b"\x00" * 5_000]


@pytest.mark.parametrize("name", ["png", "in.png"])
def test_excluded_inputs_are_never_logged(name: str) -> None:
    kept = LogPolicy(exclude=[name]).apply(_rows(IMAGE))
    assert "in.png" not in kept.schema.names
    assert META_DROPPED not in kept.schema.names  # what is left fits
    assert kept.column("in.caption").to_pylist() == ["x" * 100]


def test_no_limit_keeps_every_row_whole() -> None:
    rows = _rows(IMAGE, IMAGE * 4)
    assert LogPolicy(max_row_bytes=None).apply(rows).equals(rows)


def test_bad_policies_are_refused() -> None:
    with pytest.raises(ValueError, match="greater than 0"):
        LogPolicy(max_row_bytes=0)


def test_a_ragged_input_column_counts_each_rows_own_length() -> None:
    rows = pa.RecordBatch.from_pydict(
        {
            "in.samples": pa.array(
                [np.zeros(n, np.float32) for n in (10, 40_000)], pa.list_(pa.float32())
            )
        }
    )
    kept = LogPolicy(max_row_bytes=1_000).apply(rows)
    assert kept.column(META_DROPPED).to_pylist() == [[], ["in.samples"]]
    assert kept.column("in.samples").null_count == 1
