"""weir's control plane. The SDK: `from control import Client`.

The SDK (httpx, rich) is imported on first use of one of its names, so the server and the
workers, which import `control.*` modules, do not load it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from control.errors import (
    ConfigError,
    EntityNotFoundError,
    InferenceError,
    InferenceTimeoutError,
    InUseError,
    InvalidNameError,
    LimitError,
    WaitForDeployError,
)

if TYPE_CHECKING:
    from control.sdk.client import Client
    from control.sdk.config import DeploymentConfigBuilder
    from control.sdk.pipeline import Pipeline

_LAZY = {
    "Client": "control.sdk.client",
    "DeploymentConfigBuilder": "control.sdk.config",
    "Pipeline": "control.sdk.pipeline",
}

__all__ = [
    "Client",
    "ConfigError",
    "DeploymentConfigBuilder",
    "EntityNotFoundError",
    "InferenceError",
    "InferenceTimeoutError",
    "InUseError",
    "InvalidNameError",
    "LimitError",
    "Pipeline",
    "WaitForDeployError",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'control' has no attribute {name!r}")
