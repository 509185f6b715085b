"""`DeploymentConfigBuilder`: resources for `Pipeline.deploy()`."""

from __future__ import annotations

from pydantic import ValidationError

from control.errors import ConfigError
from control.records import DeploymentConfig

_RULES = {
    "replicas": "a whole number of worker processes from 1 to 64",
    "cpus": "a number of CPUs above 0, e.g. 0.5 or 2",
    "memory": "a size as Kubernetes writes it, e.g. '512Mi', '1Gi' or '2G'",
    "gpus": "a whole number of GPUs, 0 or more",
}


class DeploymentConfigBuilder:
    """Builds a DeploymentConfig step by step; each value is checked as it is set.

    Example: `DeploymentConfigBuilder().replica_count(2).cpus(1).memory("1Gi").build()`
    """

    def __init__(self) -> None:
        self._values: dict[str, object] = {}

    def _set(self, field: str, setter: str, value: object) -> DeploymentConfigBuilder:
        try:
            DeploymentConfig.model_validate({field: value})
        except ValidationError:
            raise ConfigError(f"{setter}({value!r}) is not valid: give {_RULES[field]}") from None
        self._values[field] = value
        return self

    def replica_count(self, count: int) -> DeploymentConfigBuilder:
        return self._set("replicas", "replica_count", count)

    def cpus(self, cpus: float) -> DeploymentConfigBuilder:
        return self._set("cpus", "cpus", cpus)

    def memory(self, memory: str) -> DeploymentConfigBuilder:
        return self._set("memory", "memory", memory)

    def gpus(self, gpus: int) -> DeploymentConfigBuilder:
        return self._set("gpus", "gpus", gpus)

    def build(self) -> DeploymentConfig:
        return DeploymentConfig.model_validate(self._values)
