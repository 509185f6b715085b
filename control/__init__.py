"""weir's control plane. The SDK: `from control import Client`."""

from control.errors import (
    EntityNotFoundError,
    InferenceError,
    InferenceTimeoutError,
    InvalidNameError,
    LimitError,
    WaitForDeployError,
)
from control.sdk.client import Client
from control.sdk.config import DeploymentConfigBuilder
from control.sdk.pipeline import Pipeline

__all__ = [
    "Client",
    "DeploymentConfigBuilder",
    "EntityNotFoundError",
    "InferenceError",
    "InferenceTimeoutError",
    "InvalidNameError",
    "LimitError",
    "Pipeline",
    "WaitForDeployError",
]
