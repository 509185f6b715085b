"""`DeploymentConfigBuilder`: resources for `Pipeline.deploy()`."""

from __future__ import annotations

from collections.abc import Sequence

from control.records import DeploymentConfig
from streams.log_policy import DEFAULT_MAX_ROW_BYTES, LogPolicy


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

    def log_policy(self, *, max_row_bytes: int | None = DEFAULT_MAX_ROW_BYTES,
                   exclude: Sequence[str] = ()) -> DeploymentConfigBuilder:
        """What the pipeline's log rows keep.

        A row over `max_row_bytes` (64 KiB by default; None: no limit) loses its largest
        input values until it fits, named in its `metadata.dropped`; `exclude`d input
        fields are never logged. Example: `.log_policy(max_row_bytes=16_384, exclude=["png"])`.
        """
        self._values["log_policy"] = LogPolicy(max_row_bytes=max_row_bytes, exclude=list(exclude))
        return self

    def build(self) -> DeploymentConfig:
        return DeploymentConfig(**self._values)  # type: ignore[arg-type]
