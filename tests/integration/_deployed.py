"""A one-model pipeline deployed for a test module, and undeployed after it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from control.records import DeploymentConfig
from control.sdk.client import Client
from control.sdk.pipeline import Pipeline
from engine.definition import RuntimeName


@contextmanager
def one_model_pipeline(client: Client, name: str, model: Path, runtime: RuntimeName = "onnx",
                       config: DeploymentConfig | None = None) -> Iterator[Pipeline]:
    """Pipeline `name` running model `name` uploaded from `model`, deployed (with `config`)
    while in use."""
    uploaded = client.upload_model(name, model).configure(runtime)
    pipeline = client.build_pipeline(name).add_model_step(uploaded)
    try:
        yield pipeline.deploy(config, quiet=True)
    finally:
        pipeline.undeploy()
