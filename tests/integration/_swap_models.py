"""The models the hot-swap tests redeploy between: a pass-through Python step ("pre") and
three ridge regressors ("swap-a", "swap-b", "swap-c") that answer differently."""

from __future__ import annotations

from pathlib import Path

from control.demo.models import diabetes_regressor
from control.sdk.client import Client
from control.sdk.model import Model

PASS_THROUGH = """
def process_data(input_data):
    return {"float_input": input_data["tensor"]}
"""


def upload_models(client: Client, model_dir: Path) -> dict[str, Model]:
    """Upload the pre-step and the three regressors; by name."""
    pre = model_dir / "swap_pre.py"
    pre.write_text(PASS_THROUGH)
    found = {"pre": client.upload_model("swap-pre", pre).configure("python")}
    for name, alpha in (("swap-a", 1.0), ("swap-b", 0.1), ("swap-c", 0.01)):
        path = diabetes_regressor(model_dir / f"{name}.onnx", alpha=alpha)
        found[name] = client.upload_model(name, path).configure("onnx")
    return found
