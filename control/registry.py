"""The registry: workspaces, models, pipelines, versions, deployments and heartbeats in Redis.

The one module that builds Redis keys. Records are pydantic models stored as JSON. It also
keeps the workers' partition claims (streams.claims). With Redis away, a call fails fast
with `RegistryUnavailable` (control.redis_client).
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from datetime import UTC, datetime

from aiokafka import TopicPartition

from control.errors import EntityNotFoundError
from control.records import (
    Deployment,
    ModelVersion,
    Pipeline,
    PipelineVersion,
    Workspace,
    now,
)
from control.redis_client import UNREACHABLE, connect
from engine.definition import PipelineSpec
from streams.log_policy import LogPolicy
from streams.status import WorkerStatus

DEFAULT_WORKSPACE = "default"
HEARTBEAT_STALE_S = 10.0
STARTING_STALE_S = 30.0
"""A starting worker is silent while it loads its models and its group forms; give it longer."""


class Registry:
    """Typed access to the control plane's state in Redis."""

    def __init__(self, url: str) -> None:
        self.redis = connect(url)
        self._release = self.redis.register_script(_RELEASE)

    def ping(self) -> bool:
        return bool(self.redis.ping())

    # -- keys ---------------------------------------------------------------
    @staticmethod
    def _ws(ws: str) -> str:
        return f"weir:ws:{ws}"

    def _pipeline(self, ws: str, name: str) -> str:
        return f"{self._ws(ws)}:pipeline:{name}"

    # -- workspaces -----------------------------------------------------------
    def ensure_workspace(self, name: str) -> Workspace:
        key = f"{self._ws(name)}:record"
        record = Workspace(name=name)
        if self.redis.set(key, record.model_dump_json(), nx=True):
            self.redis.sadd("weir:workspaces", name)
            return record
        return Workspace.model_validate_json(self.redis.get(key) or record.model_dump_json())

    def list_workspaces(self) -> list[Workspace]:
        names = self.redis.members("weir:workspaces")
        raw = [self.redis.get(f"{self._ws(n)}:record") for n in names]
        return [Workspace.model_validate_json(r) for r in raw if r]

    def get_workspace(self, name: str) -> Workspace:
        raw = self.redis.get(f"{self._ws(name)}:record")
        if raw is None:
            raise EntityNotFoundError("workspace", name, "create it with client.create_workspace()")
        return Workspace.model_validate_json(raw)

    # -- models ---------------------------------------------------------------
    def add_model(self, model: ModelVersion) -> ModelVersion:
        key = f"{self._ws(model.workspace)}:model:{model.name}"
        self.redis.rpush(key, model.model_dump_json())
        self.redis.sadd(f"{self._ws(model.workspace)}:models", model.name)
        return model

    def update_model(self, model: ModelVersion) -> ModelVersion:
        """Replace a stored model version (same name and version) with `model`."""
        key = f"{self._ws(model.workspace)}:model:{model.name}"
        for index, version in enumerate(self.model_versions(model.workspace, model.name)):
            if version.version == model.version:
                self.redis.lset(key, index, model.model_dump_json())
                return model
        raise EntityNotFoundError("model version", f"{model.name}@{model.version}")

    def model_versions(self, ws: str, name: str) -> list[ModelVersion]:
        """Every version of a model, oldest first."""
        raw = self.redis.lrange(f"{self._ws(ws)}:model:{name}", 0, -1)
        return [ModelVersion.model_validate_json(r) for r in raw]

    def get_model(self, ws: str, name: str, version: str | None = None) -> ModelVersion:
        versions = self.model_versions(ws, name)
        if not versions:
            raise EntityNotFoundError("model", name, f"upload it first (workspace {ws!r})")
        if version is None:
            return versions[-1]
        for model in versions:
            if model.version == version:
                return model
        raise EntityNotFoundError("model version", f"{name}@{version}")

    def list_models(self, ws: str) -> list[ModelVersion]:
        """The newest version of each model in the workspace."""
        names = self.redis.members(f"{self._ws(ws)}:models")
        return [self.model_versions(ws, n)[-1] for n in names]

    def delete_model(self, ws: str, name: str) -> list[ModelVersion]:
        """Forget every version of a model; returns them (their files are the caller's)."""
        versions = self.model_versions(ws, name)
        if not versions:
            raise EntityNotFoundError("model", name, f"nothing to delete in workspace {ws!r}")
        self.redis.delete(f"{self._ws(ws)}:model:{name}")
        self.redis.srem(f"{self._ws(ws)}:models", name)
        return versions

    def shas_in_use(self) -> set[str]:
        """The sha256 of every model version of every workspace."""
        return {
            model.sha
            for ws in self.list_workspaces()
            for name in self.redis.members(f"{self._ws(ws.name)}:models")
            for model in self.model_versions(ws.name, name)
        }

    # -- pipelines --------------------------------------------------------------
    def get_or_create_pipeline(self, ws: str, name: str) -> Pipeline:
        record = Pipeline(workspace=ws, name=name)
        if self.redis.set(self._pipeline(ws, name), record.model_dump_json(), nx=True):
            self.redis.sadd(f"{self._ws(ws)}:pipelines", name)
            return record
        return self.get_pipeline(ws, name)

    def get_pipeline(self, ws: str, name: str) -> Pipeline:
        raw = self.redis.get(self._pipeline(ws, name))
        if raw is None:
            raise EntityNotFoundError("pipeline", name, "create it with client.build_pipeline()")
        return Pipeline.model_validate_json(raw)

    def save_pipeline(self, pipeline: Pipeline) -> Pipeline:
        pipeline = pipeline.model_copy(update={"last_updated": now()})
        self.redis.set(
            self._pipeline(pipeline.workspace, pipeline.name), pipeline.model_dump_json()
        )
        return pipeline

    def list_pipelines(self, ws: str) -> list[Pipeline]:
        names = self.redis.members(f"{self._ws(ws)}:pipelines")
        return [self.get_pipeline(ws, n) for n in names]

    def delete_pipeline(self, ws: str, name: str) -> None:
        """Forget a pipeline, its versions and its workers' heartbeats (not deployed: the
        caller checks)."""
        self.get_pipeline(ws, name)
        key = self._pipeline(ws, name)
        self.redis.delete(key, f"{key}:versions", f"{key}:workers", f"{key}:stop")
        self.redis.srem(f"{self._ws(ws)}:pipelines", name)

    def pipelines_using(self, ws: str, model: str) -> list[str]:
        """The pipelines of which some version runs a version of `model`."""
        return [
            p.name
            for p in self.list_pipelines(ws)
            if any(
                ref.name == model
                for v in self.versions(ws, p.name)
                for ref in v.definition.models()
            )
        ]

    # -- versions ---------------------------------------------------------------
    def add_version(self, ws: str, pipeline: str, spec: PipelineSpec) -> PipelineVersion:
        """Store `spec` as a new version, unless it equals the newest one (returned instead)."""
        record = self.get_pipeline(ws, pipeline)
        versions = self.versions(ws, pipeline)
        if versions and versions[0].definition == spec:
            return versions[0]
        version = PipelineVersion(
            workspace=ws, pipeline=pipeline, version=str(uuid.uuid4()), definition=spec
        )
        self.redis.rpush(f"{self._pipeline(ws, pipeline)}:versions", version.model_dump_json())
        self.save_pipeline(record)
        return version

    def versions(self, ws: str, pipeline: str) -> list[PipelineVersion]:
        """Versions newest first."""
        raw = self.redis.lrange(f"{self._pipeline(ws, pipeline)}:versions", 0, -1)
        return [PipelineVersion.model_validate_json(r) for r in reversed(raw)]

    def get_version(self, ws: str, pipeline: str, version: str | None = None) -> PipelineVersion:
        versions = self.versions(ws, pipeline)
        if not versions:
            raise EntityNotFoundError(
                "pipeline version", pipeline, "add steps and deploy() or create_version() first"
            )
        if version is None:
            return versions[0]
        for v in versions:
            if v.version == version:
                return v
        raise EntityNotFoundError("pipeline version", f"{pipeline}@{version}")

    # -- tags -------------------------------------------------------------------
    def create_tag(self, ws: str, tag: str) -> str:
        self.redis.sadd(f"{self._ws(ws)}:tags", tag)
        return tag

    def list_tags(self, ws: str) -> list[str]:
        return self.redis.members(f"{self._ws(ws)}:tags")

    def _require_tag(self, ws: str, tag: str) -> None:
        if not self.redis.sismember(f"{self._ws(ws)}:tags", tag):
            raise EntityNotFoundError("tag", tag, "create it with client.create_tag()")

    def tag_pipeline(self, ws: str, name: str, tag: str, add: bool) -> Pipeline:
        self._require_tag(ws, tag)
        pipeline = self.get_pipeline(ws, name)
        tags = sorted(set(pipeline.tags) | {tag}) if add else [t for t in pipeline.tags if t != tag]
        return self.save_pipeline(pipeline.model_copy(update={"tags": tags}))

    def tag_model(self, ws: str, name: str, tag: str, add: bool) -> ModelVersion:
        """Tag (or untag) every version of a model."""
        self._require_tag(ws, tag)
        versions = self.model_versions(ws, name)
        if not versions:
            raise EntityNotFoundError("model", name)
        for model in versions:
            tags = sorted(set(model.tags) | {tag}) if add else [t for t in model.tags if t != tag]
            self.update_model(model.model_copy(update={"tags": tags}))
        return self.get_model(ws, name)

    # -- deployments --------------------------------------------------------------
    def set_deployment(self, deployment: Deployment) -> None:
        self.redis.set(
            f"{self._pipeline(deployment.workspace, deployment.pipeline)}:deployment",
            deployment.model_dump_json(),
        )
        self.redis.sadd("weir:deployments", f"{deployment.workspace}/{deployment.pipeline}")

    def get_deployment(self, ws: str, pipeline: str) -> Deployment | None:
        raw = self.redis.get(f"{self._pipeline(ws, pipeline)}:deployment")
        return Deployment.model_validate_json(raw) if raw else None

    def log_policy(self, ws: str, pipeline: str) -> LogPolicy:
        """What the pipeline's log rows keep: its deployment's policy, else the default."""
        deployment = self.get_deployment(ws, pipeline)
        return deployment.config.log_policy if deployment is not None else LogPolicy()

    def delete_deployment(self, ws: str, pipeline: str) -> None:
        self.redis.delete(f"{self._pipeline(ws, pipeline)}:deployment")
        self.redis.srem("weir:deployments", f"{ws}/{pipeline}")

    def list_deployments(self) -> list[Deployment]:
        found = []
        for entry in self.redis.members("weir:deployments"):
            ws, _, name = entry.partition("/")
            deployment = self.get_deployment(ws, name)
            if deployment:
                found.append(deployment)
        return found

    # -- worker heartbeats ----------------------------------------------------------
    def beat(self, status: WorkerStatus) -> None:
        self.redis.hset(
            f"{self._pipeline(status.workspace, status.pipeline)}:workers",
            status.worker_id,
            status.model_dump_json(),
        )

    def workers(self, ws: str, pipeline: str) -> list[WorkerStatus]:
        """Every worker's last heartbeat; a stale one of a worker that should still beat
        (Starting, Running or Draining) is reported as Error: it died or hangs."""
        raw = self.redis.hgetall(f"{self._pipeline(ws, pipeline)}:workers")
        statuses = []
        for text in raw.values():
            status = WorkerStatus.model_validate_json(text)
            age = (datetime.now(UTC) - status.time).total_seconds()
            limit = STARTING_STALE_S if status.status == "Starting" else HEARTBEAT_STALE_S
            if age > limit and status.status in ("Starting", "Running", "Draining"):
                status = status.model_copy(
                    update={"status": "Error", "reason": f"no heartbeat for {age:.0f}s"}
                )
            statuses.append(status)
        return sorted(statuses, key=lambda s: s.worker_id)

    def forget_workers(self, ws: str, pipeline: str, worker_ids: list[str]) -> None:
        if worker_ids:
            self.redis.hdel(f"{self._pipeline(ws, pipeline)}:workers", *worker_ids)
            self.redis.srem(f"{self._pipeline(ws, pipeline)}:stop", *worker_ids)

    def request_stop(self, ws: str, pipeline: str, worker_ids: list[str]) -> None:
        if worker_ids:
            self.redis.sadd(f"{self._pipeline(ws, pipeline)}:stop", *worker_ids)

    def stop_requested(self, status: WorkerStatus) -> bool:
        return bool(
            self.redis.sismember(
                f"{self._pipeline(status.workspace, status.pipeline)}:stop", status.worker_id
            )
        )

    # -- partition claims (streams.claims) ----------------------------------------------
    def claim_partitions(
        self, group: str, owner: str, partitions: Collection[TopicPartition]
    ) -> set[TopicPartition]:
        fields = {_claim_field(tp): tp for tp in partitions}
        if not fields:
            return set()
        key = f"weir:group:{group}:claims"
        self.redis.check()
        try:
            with self.redis.pipeline() as pipe:  # MULTI: read the old claims and set ours at once
                pipe.hmget(key, list(fields))
                pipe.hset(key, mapping=dict.fromkeys(fields, owner))
                held, _ = pipe.execute()
        except UNREACHABLE as exc:
            raise self.redis.went_away(exc) from exc
        return {tp for tp, holder in zip(fields.values(), held, strict=True) if holder is not None}

    def release_partitions(
        self, group: str, owner: str, partitions: Collection[TopicPartition]
    ) -> None:
        if partitions:
            self._release(
                keys=[f"weir:group:{group}:claims"], args=[owner, *map(_claim_field, partitions)]
            )


_RELEASE = """
for i = 2, #ARGV do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[1] then redis.call('HDEL', KEYS[1], ARGV[i]) end
end
"""
"""Drop the claims of ARGV[2..] that ARGV[1] still holds (one that lost the group late must not
release what its successor claimed)."""


def _claim_field(tp: TopicPartition) -> str:
    return f"{tp.topic}:{tp.partition}"  # Kafka topic names have no ':'
