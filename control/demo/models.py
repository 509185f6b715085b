"""Example models, trained and exported to ONNX on the spot (nothing is downloaded).

Used by the demo, the tests and the benchmarks. Needs the `demo` extra
(scikit-learn, skl2onnx).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

N_FEATURES = 10  # load_diabetes has 10 features


def diabetes_data() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled diabetes data set (442 rows, 10 float features)."""
    from sklearn.datasets import load_diabetes

    x, y = load_diabetes(return_X_y=True)
    return x.astype(np.float32), y.astype(np.float32)


def _export(model: object, path: Path, n_features: int) -> Path:
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    onnx_model = to_onnx(
        model, initial_types=[("float_input", FloatTensorType([None, n_features]))], target_opset=17
    )
    path.write_bytes(onnx_model.SerializeToString())
    return path


def diabetes_regressor(path: Path, *, alpha: float = 1.0) -> Path:
    """A ridge regressor on the diabetes data: cheap, 10 features in, one float out."""
    from sklearn.linear_model import Ridge

    x, y = diabetes_data()
    return _export(Ridge(alpha=alpha).fit(x, y), path, N_FEATURES)


def heavy_mlp(path: Path, *, hidden: tuple[int, ...] = (512, 512, 256)) -> Path:
    """A compute-heavy MLP on the diabetes data (several ms per 256-row batch on a CPU core)."""
    from sklearn.neural_network import MLPRegressor

    x, y = diabetes_data()
    model = MLPRegressor(hidden_layer_sizes=hidden, max_iter=5, random_state=0).fit(x, y)
    return _export(model, path, N_FEATURES)
