"""streams/shadow_logs.py: challenger rows join the champion's by (request id, row)."""

from __future__ import annotations

import pyarrow as pa

from streams.shadow_logs import attach_shadows, shadow_pipeline


def _primary() -> pa.Table:
    return pa.table(
        {
            "request_id": ["r1", "r1", "r2"],
            "row": pa.array([0, 1, 0], pa.int32()),
            "out.y": [1.0, 2.0, 3.0],
        }
    )


def test_challenger_outputs_align_with_champion_rows() -> None:
    shadows = pa.table(
        {
            "request_id": ["r2", "r1", "r1", "r1"],
            "row": pa.array([0, 1, 0, 1], pa.int32()),
            "metadata.shadow": ["b", "b", "c", "b"],
            "out_b.y": [30.0, 20.0, None, 20.0],
            "out_c.y": [None, None, 100.0, None],
            "metadata.error": [None, None, None, None],
        }
    )
    joined = attach_shadows(_primary(), shadows)
    assert joined["out_b.y"].to_pylist() == [None, 20.0, 30.0]
    assert joined["out_c.y"].to_pylist() == [100.0, None, None]
    assert joined["out.y"].to_pylist() == [1.0, 2.0, 3.0]


def test_a_failed_challenger_shows_its_error() -> None:
    shadows = pa.table(
        {
            "request_id": ["r1"],
            "row": pa.array([0], pa.int32()),
            "metadata.shadow": ["bad"],
            "metadata.error": ["RuntimeError: boom"],
        }
    )
    joined = attach_shadows(_primary(), shadows)
    assert joined["out_bad.error"].to_pylist() == ["RuntimeError: boom", None, None]


def test_no_shadows_leaves_the_rows_alone() -> None:
    primary = _primary()
    assert attach_shadows(primary, pa.table({"x": pa.array([], pa.int32())})) is primary
    assert shadow_pipeline("p", "c") == "p~shadow~c"
