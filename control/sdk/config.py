"""`DeploymentConfigBuilder`: resources for `Pipeline.deploy()`."""

from __future__ import annotations

from control.records import DeploymentConfig


class DeploymentConfigBuilder:
    """Builds a DeploymentConfig step by step.

    Example: `DeploymentConfigBuilder().replica_count(2).cpus(1).memory("1Gi").build()`
    """

    def __init__(self) -> None:
        self._values: dict[str, object] = {}

    def replica_count(self, count: int) -> DeploymentConfigBuilder:
        self._values["replicas"] = count
        return self

    def cpus(self, cpus: float) -> DeploymentConfigBuilder:
        self._values["cpus"] = cpus
        return self

    def memory(self, memory: str) -> DeploymentConfigBuilder:
        self._values["memory"] = memory
        return self

    def gpus(self, gpus: int) -> DeploymentConfigBuilder:
        self._values["gpus"] = gpus
        return self

    def build(self) -> DeploymentConfig:
        return DeploymentConfig(**self._values)  # type: ignore[arg-type]
