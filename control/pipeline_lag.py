"""A deployed pipeline's consumer lag per partition: its workers' groups over its topics."""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka import TopicPartition
from streams.stages import WorkerRole

from control.records import PipelineVersion
from engine.definition import ShadowStep
from streams.lag import GroupLag
from streams.topics import TopicMap, TopicSpec
from streams.worker import WorkerSpec


@dataclass(frozen=True)
class PartitionLag:
    """Records of one partition its group has not committed."""

    group: str
    topic: str
    partition: int
    lag: int


def _groups(topics: TopicMap, version: PipelineVersion) -> dict[str, list[TopicSpec]]:
    """Each worker group of the version and the topics it reads: the main workers read the
    input, step and split-arm topics; shadow workers the challenger topics."""
    ws, name, v, spec = version.workspace, version.pipeline, version.version, version.definition
    challengers = {topics.challenger(ws, name, v, i, c).name
                   for i, step in enumerate(spec.steps) if isinstance(step, ShadowStep)
                   for c in range(len(step.challengers))}
    internal = topics.internal_topics(ws, name, v, spec)

    def group(role: WorkerRole) -> str:
        return WorkerSpec(ws, name, v, spec, worker_id="", role=role).group_id

    groups = {group("main"): [topics.input(ws, name),
                              *(t for t in internal if t.name not in challengers)]}
    if challengers:
        groups[group("shadow")] = [t for t in internal if t.name in challengers]
    return groups


async def pipeline_lag(lag: GroupLag, topics: TopicMap,
                       version: PipelineVersion) -> list[PartitionLag]:
    """The lag of every partition the deployed `version`'s workers read."""
    out = []
    for group, specs in _groups(topics, version).items():
        tps = [TopicPartition(s.name, p) for s in specs for p in range(s.partitions)]
        behind = await lag.read(group, tps)
        out += [PartitionLag(group, tp.topic, tp.partition, behind[tp]) for tp in tps]
    return out
