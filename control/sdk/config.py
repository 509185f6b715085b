"""`DeploymentConfigBuilder`: resources for `Pipeline.deploy()`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from pydantic import BaseModel, ValidationError

from control.errors import ConfigError
from control.records import DeploymentConfig, SidekickConfig
from engine.answers import ResultFormat
from streams.log_policy import DEFAULT_MAX_ROW_BYTES, LogPolicy

_RULES = {
    "replicas": "a whole number of worker processes from 1 to 64",
    "cpus": "a number of CPUs above 0, e.g. 0.5 or 2",
    "memory": "a size as Kubernetes writes it, e.g. '512Mi', '1Gi' or '2G'",
    "gpus": "a whole number of GPUs, 0 or more",
    "env": "a mapping of environment variable names to string values",
    "result_format": "'request' (each answer in its request's format), 'arrow' or 'json'",
}


class _Named(Protocol):
    name: str


class DeploymentConfigBuilder:
    """Builds a DeploymentConfig step by step; each value is checked as it is set.

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
        return self._set(self._values, DeploymentConfig, "replicas", "replica_count", count)

    def cpus(self, cpus: float) -> DeploymentConfigBuilder:
        return self._set(self._values, DeploymentConfig, "cpus", "cpus", cpus)

    def memory(self, memory: str) -> DeploymentConfigBuilder:
        return self._set(self._values, DeploymentConfig, "memory", "memory", memory)

    def gpus(self, gpus: int) -> DeploymentConfigBuilder:
        return self._set(self._values, DeploymentConfig, "gpus", "gpus", gpus)

    def result_format(self, result_format: ResultFormat) -> DeploymentConfigBuilder:
        """What answers on the result topic are written in: "request" (the default: a JSON
        request gets a JSON answer, an Arrow one Arrow), or "arrow" or "json" for every
        request."""
        return self._set(
            self._values, DeploymentConfig, "result_format", "result_format", result_format
        )

    def sidekick_replica_count(self, model: _Named | str, count: int) -> DeploymentConfigBuilder:
        """How many workers run `model`'s sidekick step (default 1)."""
        return self._sidekick(model, "replicas", "sidekick_replica_count", count)

    def sidekick_cpus(self, model: _Named | str, cpus: float) -> DeploymentConfigBuilder:
        """CPUs of each worker of `model`'s sidekick step (onnxruntime's threads)."""
        return self._sidekick(model, "cpus", "sidekick_cpus", cpus)

    def sidekick_memory(self, model: _Named | str, memory: str) -> DeploymentConfigBuilder:
        """Resident memory of each worker of `model`'s sidekick step, e.g. "2Gi"."""
        return self._sidekick(model, "memory", "sidekick_memory", memory)

    def sidekick_gpus(self, model: _Named | str, gpus: int) -> DeploymentConfigBuilder:
        """GPUs of `model`'s sidekick step: more than 0 runs it on onnxruntime's CUDA
        execution provider where one exists."""
        return self._sidekick(model, "gpus", "sidekick_gpus", gpus)

    def sidekick_env(self, model: _Named | str, env: dict[str, str]) -> DeploymentConfigBuilder:
        """Environment variables of the workers of `model`'s sidekick step."""
        return self._sidekick(model, "env", "sidekick_env", dict(env))

    def log_policy(
        self, *, max_row_bytes: int | None = DEFAULT_MAX_ROW_BYTES, exclude: Sequence[str] = ()
    ) -> DeploymentConfigBuilder:
        """What the pipeline's log rows keep.

        A row over `max_row_bytes` (64 KiB by default; None: no limit) loses its largest
        input values until it fits, named in its `metadata.dropped`; `exclude`d input
        fields are never logged. Example: `.log_policy(max_row_bytes=16_384, exclude=["png"])`.
        """
        self._values["log_policy"] = LogPolicy(max_row_bytes=max_row_bytes, exclude=list(exclude))
        return self

    def build(self) -> DeploymentConfig:
        sidekicks = {
            name: SidekickConfig.model_validate(values) for name, values in self._sidekicks.items()
        }
        return DeploymentConfig.model_validate({**self._values, "sidekicks": sidekicks})

    def _sidekick(
        self, model: _Named | str, field: str, setter: str, value: object
    ) -> DeploymentConfigBuilder:
        name = model if isinstance(model, str) else model.name
        return self._set(self._sidekicks.setdefault(name, {}), SidekickConfig, field, setter, value)

    def _set(
        self,
        values: dict[str, Any],
        record: type[BaseModel],
        field: str,
        setter: str,
        value: object,
    ) -> DeploymentConfigBuilder:
        try:
            record.model_validate({field: value})
        except ValidationError:
            raise ConfigError(f"{setter}({value!r}) is not valid: give {_RULES[field]}") from None
        values[field] = value
        return self
