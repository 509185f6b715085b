"""Topic names, partition counts and configs, read from topics.yaml.

This is the one module that formats a topic name; everything else asks a
`TopicMap`.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from engine.definition import PipelineSpec, ShadowStep

TopicRole = Literal["input", "boundary", "challenger", "output", "logs", "dead_letter"]
ROLES: tuple[TopicRole, ...] = ("input", "boundary", "challenger", "output", "logs", "dead_letter")

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

    def boundary(self, workspace: str, pipeline: str, deployment: str, index: int) -> TopicSpec:
        """The input of step `index` of a deployment where its chain is cut (a sidekick
        step, or the steps after one)."""
        return self.templates["boundary"].render(
            workspace=workspace, pipeline=pipeline, deployment=deployment, index=index
        )

    def challenger(
        self, workspace: str, pipeline: str, deployment: str, index: int, challenger: int
    ) -> TopicSpec:
        """The input of shadow step `index`, fanned out to challenger `challenger`."""
        return self.templates["challenger"].render(
            workspace=workspace,
            pipeline=pipeline,
            deployment=deployment,
            index=index,
            challenger=challenger,
        )

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

    def deployment_of(self, name: str) -> tuple[str, str, str] | None:
        """(workspace, pipeline, deployment) of one deployment's own topic, else None."""
        for role in ("boundary", "challenger"):
            found = self.parse(role, name)
            if found is not None:
                return found["workspace"], found["pipeline"], found["deployment"]
        return None

    def pattern(self, *roles: TopicRole) -> str:
        """A regex matching every topic of the given roles (for pattern subscriptions)."""
        # One regex may name a group once: the alternatives keep theirs unnamed.
        return "|".join(
            f"(?:{_UNNAMED.sub('(?:', self.templates[role].pattern().pattern)})" for role in roles
        )

    def pipeline_topics(self, workspace: str, pipeline: str) -> dict[str, TopicSpec]:
        """The stable topics of a pipeline, keyed as `Pipeline.topics()` shows them."""
        return {
            "input": self.input(workspace, pipeline),
            "output": self.output(workspace, pipeline),
            "logs": self.logs(workspace, pipeline),
            "dead_letter": self.dead_letter(workspace, pipeline),
        }

    def internal_topics(
        self,
        workspace: str,
        pipeline: str,
        deployment: str,
        spec: PipelineSpec,
        sidekicks: Collection[int] = (),
    ) -> list[TopicSpec]:
        """The topics that belong to one deployment (drained and dropped with it): the
        boundary topics around each sidekick step (`sidekicks`: their step indexes) and each
        shadow's challenger topics."""
        cuts = sorted({i for k in sidekicks for i in (k, k + 1) if i < len(spec.steps)})
        topics = [self.boundary(workspace, pipeline, deployment, i) for i in cuts]
        for index, step in enumerate(spec.steps):
            if isinstance(step, ShadowStep):
                topics += [
                    self.challenger(workspace, pipeline, deployment, index, c)
                    for c in range(len(step.challengers))
                ]
        return topics

    def deployment_topics(
        self,
        workspace: str,
        pipeline: str,
        deployment: str,
        spec: PipelineSpec,
        sidekicks: Collection[int] = (),
    ) -> list[TopicSpec]:
        """Every topic a deployment needs: the stable ones plus its own."""
        return [
            *self.pipeline_topics(workspace, pipeline).values(),
            *self.internal_topics(workspace, pipeline, deployment, spec, sidekicks),
        ]
