"""The model both systems serve: a gradient-boosted regressor on scikit-learn's diabetes data,
saved for MLServer (joblib) and exported for weir (ONNX, skl2onnx)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from control.demo.models import N_FEATURES, diabetes_data

NAME = "diabetes-gbr"


def train(directory: Path) -> tuple[Path, Path]:
    """(`model.onnx`, `model.joblib`) of the same fitted model, in `directory`."""
    import joblib
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.ensemble import GradientBoostingRegressor

    directory.mkdir(parents=True, exist_ok=True)
    x, y = diabetes_data()
    model = GradientBoostingRegressor(n_estimators=50, random_state=0).fit(x, y)
    joblib_path = directory / "model.joblib"
    joblib.dump(model, joblib_path)
    onnx_model = to_onnx(
        model, initial_types=[("float_input", FloatTensorType([None, N_FEATURES]))], target_opset=17
    )
    onnx_path = directory / "model.onnx"
    onnx_path.write_bytes(onnx_model.SerializeToString())
    return onnx_path, joblib_path


def rows(count: int, offset: int = 0) -> np.ndarray:
    """`count` float32 rows of the diabetes features, from row `offset` (wrapping)."""
    x, _ = diabetes_data()
    return np.take(x, range(offset, offset + count), axis=0, mode="wrap").astype(np.float32)
