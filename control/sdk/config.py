"""`DeploymentConfigBuilder`: resources for `Pipeline.deploy()`."""

from __future__ import annotations

from typing import Any, Protocol

from control.records import DeploymentConfig, SidekickConfig


class _Named(Protocol):
    name: str


class DeploymentConfigBuilder:
    """Builds a DeploymentConfig step by step.

    Example:
        config = (DeploymentConfigBuilder().replica_count(2).cpus(1).memory("1Gi")
                  .sidekick_cpus(big_model, 4).sidekick_memory(big_model, "8Gi").build())

    A model given any `sidekick_*` setting runs as a sidekick: its step runs in workers of
    its own (their own replicas, CPUs, memory, GPUs and environment), reached over a topic;
    the rest of the pipeline stays fused in the main workers around it.
    """

    def __init__(self) -> None:
        self._values: dict[str, object] = {}
        self._sidekicks: dict[str, dict[str, Any]] = {}

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

    def sidekick_replica_count(self, model: _Named | str, count: int) -> DeploymentConfigBuilder:
        """How many workers run `model`'s sidekick step (default 1)."""
        return self._sidekick(model, replicas=count)

    def sidekick_cpus(self, model: _Named | str, cpus: float) -> DeploymentConfigBuilder:
        """CPUs of each worker of `model`'s sidekick step (onnxruntime's threads)."""
        return self._sidekick(model, cpus=cpus)

    def sidekick_memory(self, model: _Named | str, memory: str) -> DeploymentConfigBuilder:
        """Resident memory of each worker of `model`'s sidekick step, e.g. "2Gi"."""
        return self._sidekick(model, memory=memory)

    def sidekick_gpus(self, model: _Named | str, gpus: int) -> DeploymentConfigBuilder:
        """GPUs of `model`'s sidekick step: more than 0 runs it on onnxruntime's CUDA
        execution provider where one exists."""
        return self._sidekick(model, gpus=gpus)

    def sidekick_env(self, model: _Named | str, env: dict[str, str]) -> DeploymentConfigBuilder:
        """Environment variables of the workers of `model`'s sidekick step."""
        return self._sidekick(model, env=dict(env))

    def _sidekick(self, model: _Named | str, **values: Any) -> DeploymentConfigBuilder:
        name = model if isinstance(model, str) else model.name
        self._sidekicks.setdefault(name, {}).update(values)
        return self

    def build(self) -> DeploymentConfig:
        sidekicks = {name: SidekickConfig(**values) for name, values in self._sidekicks.items()}
        return DeploymentConfig(**self._values, sidekicks=sidekicks)  # type: ignore[arg-type]
