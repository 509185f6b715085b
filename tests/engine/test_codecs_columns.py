"""Tables for engine.codecs' numpy conversions: tensor columns (one shape per row), ragged rows
(one array per row), nulls, and record batches built from named arrays."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from engine.codecs import (
    ARROW_STREAM,
    PANDAS_RECORDS,
    batch_from_arrays,
    batch_to_arrays,
    column_to_ndarray,
    column_values,
    decode,
    encode,
    ndarray_to_column,
)
from engine.errors import CodecError


SHAPES = [(3,), (2, 4), (1, 2, 2)]
ND_DTYPES = [np.float32, np.float64, np.int32, np.int64, np.bool_, np.uint8]


@pytest.mark.parametrize("inner", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", ND_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("rows", [0, 1, 7])
def test_ndarray_round_trip_keeps_dtype_and_shape(
    inner: tuple[int, ...], dtype: type, rows: int
) -> None:
    array = (np.arange(rows * math.prod(inner)) % 5).astype(dtype).reshape((rows, *inner))
    column = ndarray_to_column(array)
    assert len(column) == rows
    assert pa.types.is_fixed_size_list(column.type)
    back = column_to_ndarray(column)
    assert back.dtype == array.dtype
    assert back.shape == array.shape
    np.testing.assert_array_equal(back, array)


@pytest.mark.parametrize(
    "array",
    [
        np.array([1.5, 2.5], dtype=np.float32),
        np.array([1, 2, 3], dtype=np.int64),
        np.array([True, False]),
        np.array(["a", "bc"], dtype=object),
        np.arange(3).astype("datetime64[us]"),
        np.zeros((4, 0), dtype=np.float32),
    ],
    ids=["float32", "int64", "bool", "string", "timestamp", "empty-inner"],
)
def test_ndarray_round_trip_plain_columns(array: np.ndarray) -> None:
    back = column_to_ndarray(ndarray_to_column(array))
    assert (back.dtype, back.shape) == (array.dtype, array.shape)
    np.testing.assert_array_equal(back, array)


def test_ndarray_to_column_is_zero_copy_for_contiguous_numbers() -> None:
    array = np.random.default_rng(1).random((5, 2, 4))
    column = ndarray_to_column(array)
    assert column.flatten().flatten().buffers()[1].address == array.ctypes.data


def test_nd_columns_survive_arrow_stream() -> None:
    arrays = {
        "img": np.ones((6, 2, 4), np.float32),
        "vec": np.zeros((6, 3), np.int32),
        "id": np.arange(6),
    }
    back = batch_to_arrays(decode(encode(batch_from_arrays(arrays), ARROW_STREAM), ARROW_STREAM))
    for name, array in arrays.items():
        assert (back[name].dtype, back[name].shape) == (array.dtype, array.shape)
        np.testing.assert_array_equal(back[name], array)


@pytest.mark.parametrize(
    "column",
    [
        pa.array([[1.0, 2.0], [3.0, 4.0]], pa.list_(pa.float64())),
        pa.array([[1.0, 2.0], [3.0, 4.0]], pa.large_list(pa.float64())),
        pa.array([[1.0, 2.0], [3.0, 4.0]], pa.list_(pa.float64(), 2)),
        pa.chunked_array([[[1.0, 2.0]], [[3.0, 4.0]]]),
    ],
    ids=["list", "large_list", "fixed_size_list", "chunked"],
)
def test_variable_and_fixed_lists_give_the_same_array(column: pa.Array) -> None:
    back = column_to_ndarray(column)
    np.testing.assert_array_equal(back, np.array([[1.0, 2.0], [3.0, 4.0]]))


def test_sliced_list_column_uses_only_its_rows() -> None:
    column = pa.array([[1, 2, 3], [4, 5], [6, 7]]).slice(1)
    np.testing.assert_array_equal(column_to_ndarray(column), [[4, 5], [6, 7]])


@pytest.mark.parametrize(
    "values, lengths",
    [
        ([[1, 2, 3], [1, 2, 3, 4]], "lengths 3 and 4"),
        ([[[1, 2]], [[1, 2], [3, 4]]], "lengths 1 and 2"),
        ([[], [1]], "lengths 0 and 1"),
    ],
    ids=["depth1", "depth1-nested", "empty-row"],
)
def test_ragged_lists_raise_as_one_tensor(values: list, lengths: str) -> None:
    with pytest.raises(
        CodecError,
        match=rf"the codec refused column 'x': rows of column 'x' "
        rf"have {lengths}; every row must",
    ):
        column_to_ndarray(pa.array(values), name="x")


@pytest.mark.parametrize(
    "values, shapes",
    [
        ([[1, 2, 3], [4]], [(3,), (1,)]),
        ([[], [1, 2]], [(0,), (2,)]),
        ([[[1, 2]], [[3, 4], [5, 6]]], [(1, 2), (2, 2)]),
    ],
    ids=["depth1", "empty-row", "rows-of-vectors"],
)
def test_ragged_lists_come_as_one_array_per_row(values: list, shapes: list) -> None:
    rows = column_values(pa.array(values), name="x")
    assert isinstance(rows, list)
    assert [row.shape for row in rows] == shapes
    for row, expected in zip(rows, values):
        np.testing.assert_array_equal(row, np.array(expected).reshape(row.shape))


def test_ragged_rows_of_a_sliced_column_and_a_uniform_column_as_one_array() -> None:
    rows = column_values(pa.array([[9], [1, 2, 3], [4]], pa.list_(pa.uint8())).slice(1))
    assert [row.tolist() for row in rows] == [[1, 2, 3], [4]]
    assert all(row.dtype == np.uint8 for row in rows)
    uniform = column_values(pa.array([[1, 2], [3, 4]]))
    assert isinstance(uniform, np.ndarray) and uniform.shape == (2, 2)


def test_rows_ragged_within_a_row_raise() -> None:
    with pytest.raises(
        CodecError,
        match="the codec refused column 'x': its rows hold lists of "
        "lengths 1 and 2 below the first level",
    ):
        column_values(pa.array([[[1, 2], [3, 4]], [[1, 2], [3]]]), name="x")


@pytest.mark.parametrize(
    "rows, kind",
    [
        ([np.arange(3, dtype=np.uint8), np.arange(1, dtype=np.uint8)], pa.list_(pa.uint8())),
        (
            [np.zeros((2, 3), np.float32), np.ones((1, 3), np.float32)],
            pa.list_(pa.list_(pa.float32(), 3)),
        ),
        ([np.zeros(0, np.int64), np.arange(2)], pa.list_(pa.int64())),
    ],
    ids=["bytes", "rows-of-vectors", "empty-row"],
)
def test_one_array_per_row_round_trips_through_arrow(rows: list, kind: pa.DataType) -> None:
    batch = batch_from_arrays({"v": rows})
    assert batch.schema.field("v").type == kind
    back = batch_to_arrays(decode(encode(batch, ARROW_STREAM), ARROW_STREAM), ragged=True)["v"]
    if isinstance(back, np.ndarray):  # rows of one shape come back as one array
        back = list(back)
    assert len(back) == len(rows)
    for got, want in zip(back, rows):
        np.testing.assert_array_equal(got, want)


def test_one_array_per_row_must_share_dtype_and_trailing_shape() -> None:
    with pytest.raises(CodecError, match="column 'v' is one array per row, but they differ"):
        batch_from_arrays({"v": [np.zeros((2, 3)), np.zeros((2, 4))]})


def test_ragged_json_rows_raise_when_made_arrays() -> None:
    batch = decode(b'[{"x": [1, 2]}, {"x": [1, 2, 3]}]', PANDAS_RECORDS)
    with pytest.raises(CodecError, match="rows of column 'x' have lengths 2 and 3"):
        batch_to_arrays(batch)
    assert [row.tolist() for row in batch_to_arrays(batch, ragged=True)["x"]] == [[1, 2], [1, 2, 3]]


@pytest.mark.parametrize(
    "column, what",
    [
        (pa.array([1.0, None]), "null values"),
        (pa.array([1, None], pa.int32()), "null values"),
        (pa.array([True, None]), "null values"),
        (pa.array([[1.0], None]), "null rows"),
        (pa.array([[1.0, None]]), "null values"),
        (pa.array([[[1]], [None]]), "null rows"),
    ],
)
def test_nulls_in_numeric_data_raise(column: pa.Array, what: str) -> None:
    with pytest.raises(CodecError, match=f"column 'score' has {what}"):
        column_to_ndarray(column, name="score")


def test_string_nulls_stay_none() -> None:
    assert column_to_ndarray(pa.array(["a", None])).tolist() == ["a", None]


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"a": np.zeros(3), "b": np.zeros(4)}, "different lengths"),
        ({"a": np.zeros((3, 2)), "b": np.zeros((2, 3))}, "different lengths"),
        ({"a": np.float64(1.0)}, "at least one dimension"),
        ({"a": np.array(1.0)}, "at least one dimension"),
    ],
)
def test_batch_from_arrays_rejects_bad_shapes(arrays: dict, message: str) -> None:
    with pytest.raises(CodecError, match=message):
        batch_from_arrays(arrays)
