"""A deployed pipeline's consumer lag per partition: its workers' groups over its topics."""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka import TopicPartition

from control.records import Deployment, PipelineVersion
from engine.definition import ShadowStep
from streams.lag import GroupLag
from streams.plan import Layout, sidekick_steps
from streams.topics import TopicMap
from streams.worker_spec import group_id


@dataclass(frozen=True)
class PartitionLag:
    """Records of one partition its group has not committed."""

    group: str
    topic: str
    partition: int
    lag: int


def _groups(
    topics: TopicMap, deployment: Deployment, version: PipelineVersion
) -> dict[str, list[str]]:
    """Each worker group of the deployment and the topics it reads: the main workers the
    input and the topics after each sidekick step, each sidekick step's workers its input,
    the shadow workers the challenger topics."""
    ws, name, spec = version.workspace, version.pipeline, version.definition
    layout = Layout(
        ws, name, deployment.id, frozenset(sidekick_steps(spec, deployment.config.sidekicks))
    )
    groups = {
        group_id(ws, name, "main"): [
            topics.input(ws, name).name
            if start == 0
            else topics.boundary(ws, name, deployment.id, start).name
            for start, _ in layout.spans(len(spec.steps))
        ]
    }
    for step in sorted(layout.sidekicks):
        groups[group_id(ws, name, "sidekick", step)] = [
            topics.boundary(ws, name, deployment.id, step).name
        ]
    challengers = [
        topics.challenger(ws, name, deployment.id, i, c).name
        for i, step in enumerate(spec.steps)
        if isinstance(step, ShadowStep)
        for c in range(len(step.challengers))
    ]
    if challengers:
        groups[group_id(ws, name, "shadow")] = challengers
    return groups


async def pipeline_lag(
    lag: GroupLag, topics: TopicMap, deployment: Deployment, version: PipelineVersion
) -> list[PartitionLag]:
    """The lag of every partition the deployment's workers read."""
    partitions = {
        t.name: t.partitions
        for t in topics.deployment_topics(
            version.workspace,
            version.pipeline,
            deployment.id,
            version.definition,
            sidekick_steps(version.definition, deployment.config.sidekicks),
        )
    }
    out = []
    for group, names in _groups(topics, deployment, version).items():
        tps = [TopicPartition(name, p) for name in names for p in range(partitions[name])]
        behind = await lag.read(group, tps)
        out += [PartitionLag(group, tp.topic, tp.partition, behind[tp]) for tp in tps]
    return out
