"""Topic names, partition counts and configs, read from topics.yaml.

This is the one module that formats a topic name; everything else asks a
`TopicMap`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from engine.definition import PipelineSpec, RandomSplitStep, ShadowStep

TopicRole = Literal["input", "step", "split_arm", "challenger", "output", "logs", "dead_letter"]
ROLES: tuple[TopicRole, ...] = ("input", "step", "split_arm", "challenger", "output", "logs",
                                "dead_letter")

DEFAULT_TOPICS_FILE = Path(__file__).resolve().parent.parent / "topics.yaml"

# Kafka's own rule for topic names.
_LEGAL_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
_UNNAMED = re.compile(r"\(\?P<\w+>")  # a named group's opening


@dataclass(frozen=True)
class TopicSpec:
    """One concrete topic: its name and how to create it."""

    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class _Template:
    name: str
    partitions: int
    config: dict[str, str] = field(hash=False)

    def render(self, **values: Any) -> TopicSpec:
        name = self.name.format(**values)
        if not _LEGAL_TOPIC.match(name):
            raise ValueError(f"topic name {name!r} is not a legal Kafka topic name")
        return TopicSpec(name, self.partitions, dict(self.config))

    def pattern(self) -> re.Pattern[str]:
        # Workspace/pipeline/model names are DNS labels, so they hold no '.'.
        parts = re.split(r"\{(\w+)\}", self.name)
        regex = "".join(
            re.escape(part) if i % 2 == 0 else f"(?P<{part}>[A-Za-z0-9-]+)"
            for i, part in enumerate(parts)
        )
        return re.compile(f"^{regex}$")


@dataclass(frozen=True)
class TopicMap:
    """The topics of every pipeline, as topics.yaml describes them."""

    templates: dict[TopicRole, _Template] = field(hash=False)

    @classmethod
    def load(cls, path: Path = DEFAULT_TOPICS_FILE) -> TopicMap:
        """Read topics.yaml (or another file of the same form)."""
        return cls.from_dict(yaml.safe_load(path.read_text()))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TopicMap:
        defaults = data.get("defaults", {})
        topics = data.get("topics", {})
        missing = [role for role in ROLES if role not in topics]
        if missing:
            raise ValueError(f"topics.yaml lacks the roles {missing}")
        templates = {}
        for role in ROLES:
            entry = topics[role]
            config = {**defaults.get("config", {}), **entry.get("config", {})}
            templates[role] = _Template(
                name=entry["name"],
                partitions=int(entry.get("partitions", defaults.get("partitions", 1))),
                config={k: str(v) for k, v in config.items()},
            )
        return cls(templates)

    def input(self, workspace: str, pipeline: str) -> TopicSpec:
        return self.templates["input"].render(workspace=workspace, pipeline=pipeline)

    def step(self, workspace: str, pipeline: str, version: str, index: int) -> TopicSpec:
        """The topic feeding step `index` of a version; step 0 reads the input topic."""
        if index == 0:
            return self.input(workspace, pipeline)
        return self.templates["step"].render(
            workspace=workspace, pipeline=pipeline, version=version, index=index
        )

    def split_arm(self, workspace: str, pipeline: str, version: str, index: int,
                  arm: int) -> TopicSpec:
        """The rows that the split of step `index` sends to arm `arm`."""
        return self.templates["split_arm"].render(
            workspace=workspace, pipeline=pipeline, version=version, index=index, arm=arm)

    def challenger(self, workspace: str, pipeline: str, version: str, index: int,
                   challenger: int) -> TopicSpec:
        """The input of shadow step `index`, fanned out to challenger `challenger`."""
        return self.templates["challenger"].render(
            workspace=workspace, pipeline=pipeline, version=version, index=index,
            challenger=challenger)

    def output(self, workspace: str, pipeline: str) -> TopicSpec:
        return self.templates["output"].render(workspace=workspace, pipeline=pipeline)

    def logs(self, workspace: str, pipeline: str) -> TopicSpec:
        return self.templates["logs"].render(workspace=workspace, pipeline=pipeline)

    def dead_letter(self, workspace: str, pipeline: str) -> TopicSpec:
        return self.templates["dead_letter"].render(workspace=workspace, pipeline=pipeline)

    def parse(self, role: TopicRole, name: str) -> dict[str, str] | None:
        """The placeholders of a topic name of `role`, or None if it is not one."""
        match = self.templates[role].pattern().fullmatch(name)
        return match.groupdict() if match else None

    def pattern(self, *roles: TopicRole) -> str:
        """A regex matching every topic of the given roles (for pattern subscriptions)."""
        # One regex may name a group once: the alternatives keep theirs unnamed.
        return "|".join(f"(?:{_UNNAMED.sub('(?:', self.templates[role].pattern().pattern)})"
                        for role in roles)

    def pipeline_topics(self, workspace: str, pipeline: str) -> dict[str, TopicSpec]:
        """The stable topics of a pipeline, keyed as `Pipeline.topics()` shows them."""
        return {
            "input": self.input(workspace, pipeline),
            "output": self.output(workspace, pipeline),
            "logs": self.logs(workspace, pipeline),
            "dead_letter": self.dead_letter(workspace, pipeline),
        }

    def internal_topics(self, workspace: str, pipeline: str, version: str,
                        spec: PipelineSpec) -> list[TopicSpec]:
        """The topics that belong to one version (drained and dropped with it): the step
        topics, each split's arm topics and each shadow's challenger topics."""
        topics = []
        for index, step in enumerate(spec.steps):
            if index > 0:
                topics.append(self.step(workspace, pipeline, version, index))
            if isinstance(step, RandomSplitStep):
                topics += [self.split_arm(workspace, pipeline, version, index, arm)
                           for arm in range(len(step.arms))]
            elif isinstance(step, ShadowStep):
                topics += [self.challenger(workspace, pipeline, version, index, c)
                           for c in range(len(step.challengers))]
        return topics

    def version_topics(self, workspace: str, pipeline: str, version: str,
                       spec: PipelineSpec) -> list[TopicSpec]:
        """Every topic a version needs: the stable ones plus its own."""
        return [*self.pipeline_topics(workspace, pipeline).values(),
                *self.internal_topics(workspace, pipeline, version, spec)]
