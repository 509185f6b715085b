"""Pipelines deployed while a test uses them, and undeployed after it even when it fails,
so one failure does not leave workers running on the stack the other tests share."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from control.records import DeploymentConfig
from control.sdk.client import Client
from control.sdk.pipeline import Pipeline
from engine.definition import RuntimeName


@contextmanager
def one_model_pipeline(
    client: Client,
    name: str,
    model: Path,
    runtime: RuntimeName = "onnx",
    config: DeploymentConfig | None = None,
) -> Iterator[Pipeline]:
    """Pipeline `name` running model `name` uploaded from `model`, deployed (with `config`)
    while in use."""
    uploaded = client.upload_model(name, model).configure(runtime)
    with deployed(client.build_pipeline(name).add_model_step(uploaded), config) as pipeline:
        yield pipeline


@contextmanager
def deployed(pipeline: Pipeline, config: DeploymentConfig | None = None) -> Iterator[Pipeline]:
    """`pipeline` deployed (with `config`) while in use."""
    try:
        yield pipeline.deploy(config, quiet=True)
    finally:
        pipeline.undeploy()
