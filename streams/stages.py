"""The agents of one pipeline version, as stages (streams.agents.step.Stage).

    model step i      step-i              reads step i's topic, sends on
    split step i      step-i-split        picks an arm per row, sends rows to the arm topics
                      step-i-arm-k        runs arm k's models on its rows, sends on
    shadow step i     step-i-champion     runs the champion, sends on, fans its input out
                      step-i-shadow-c     runs challenger c, logs its rows (shadow workers)

"Sends on" is the next step's topic, or the result topic after the
last step. A worker of role "main" runs every stage on the answer path; one of
role "shadow" runs only the challengers, in its own process, so a slow or
crashing challenger cannot hold back or fail the champion's answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pyarrow as pa

from engine.definition import PipelineSpec, ShadowStep
from engine.pipeline import CompiledPipeline
from engine.steps import ShadowRunner, SplitRunner, StepRunner
from streams.agents.sinks import (
    SPLIT_ARM,
    FanOut,
    Forward,
    ShadowAnswer,
    Sink,
    SplitRoute,
)
from streams.agents.step import Stage, StepCompute, Transform, finisher
from streams.settings import WorkerSettings
from streams.topics import TopicMap

WorkerRole = Literal["main", "shadow"]


def has_shadows(spec: PipelineSpec) -> bool:
    """Whether a version needs shadow workers."""
    return any(isinstance(step, ShadowStep) for step in spec.steps)


def version_stages(pipeline: CompiledPipeline, workspace: str, name: str, topic_map: TopicMap,
                   role: WorkerRole, settings: WorkerSettings) -> list[Stage]:
    """The stages a worker of `role` runs for `pipeline` (a version of `workspace`/`name`)."""
    build = _Builder(pipeline, workspace, name, topic_map, settings)
    stages: list[Stage] = []
    for i, runner in enumerate(pipeline.steps):
        if role == "shadow":
            if isinstance(runner, ShadowRunner):
                stages += build.challengers(i, runner)
        elif isinstance(runner, SplitRunner):
            stages += build.split(i, runner)
        elif isinstance(runner, ShadowRunner):
            stages.append(build.champion(i, runner))
        else:
            stages.append(build.model_step(i, runner))
    return stages


@dataclass
class _Builder:
    pipeline: CompiledPipeline
    workspace: str
    name: str
    topic_map: TopicMap
    settings: WorkerSettings

    @property
    def version(self) -> str:
        return self.pipeline.version

    def _ends(self, index: int) -> bool:
        return index == len(self.pipeline.steps) - 1

    def _sink(self, cls: type[Sink], labels: tuple[str, str], **fields: object) -> Sink:
        m, ws, p = self.topic_map, self.workspace, self.name
        return cls(labels=labels, output=m.output(ws, p).name,  # type: ignore[call-arg]
                   dead_letter=m.dead_letter(ws, p).name,
                   max_bytes=self.settings.max_message_bytes, **fields)

    def _then(self, index: int, labels: tuple[str, str]) -> Sink:
        """Where the output of step `index` goes: the next step, or the result topic."""
        m, ws, p = self.topic_map, self.workspace, self.name
        nxt = m.output(ws, p) if self._ends(index) else m.step(ws, p, self.version, index + 1)
        return self._sink(Forward, labels, next=nxt.name)

    def _compute(self, transform: Transform, *, starts: bool, ends: bool) -> StepCompute:
        return StepCompute(transform, finish=finisher(self.pipeline) if ends else None,
                           starts=starts, max_batch_rows=self.settings.max_batch_rows)

    def _source(self, index: int) -> str:
        return self.topic_map.step(self.workspace, self.name, self.version, index).name

    def model_step(self, i: int, runner: StepRunner) -> Stage:
        labels = (runner.label, runner.last_model.label())
        compute = self._compute(lambda m: self.pipeline.run_step(i, m), starts=i == 0,
                                ends=self._ends(i))
        return Stage(f"step-{i}", self._source(i), compute, self._then(i, labels), self.version)

    def split(self, i: int, runner: SplitRunner) -> list[Stage]:
        arms = [self.topic_map.split_arm(self.workspace, self.name, self.version, i, k).name
                for k in range(len(runner.step.arms))]

        def mark_arms(message: pa.RecordBatch) -> pa.RecordBatch:
            chosen = self.pipeline.choose_arms(i, message)
            return message.append_column(SPLIT_ARM, pa.array(chosen, pa.int32()))

        stages = [Stage(f"step-{i}-split", self._source(i),
                        self._compute(mark_arms, starts=i == 0, ends=False),
                        self._sink(SplitRoute, (runner.label, "splitter"), arms=tuple(arms)),
                        self.version)]
        for k, arm in enumerate(runner.step.arms):
            labels = (f"{runner.label} arm {k}", arm.models[-1].label())
            compute = self._compute(lambda m, k=k: self.pipeline.run_arm(i, k, m),
                                    starts=False, ends=self._ends(i))
            stages.append(Stage(f"step-{i}-arm-{k}", arms[k], compute, self._then(i, labels),
                                self.version))
        return stages

    def champion(self, i: int, runner: ShadowRunner) -> Stage:
        labels = (runner.label, runner.last_model.label())
        challengers = tuple(
            self.topic_map.challenger(self.workspace, self.name, self.version, i, c).name
            for c in range(len(runner.challengers)))
        compute = self._compute(lambda m: self.pipeline.run_champion(i, m), starts=i == 0,
                                ends=self._ends(i))
        sink = self._sink(FanOut, labels, inner=self._then(i, labels), challengers=challengers)
        return Stage(f"step-{i}-champion", self._source(i), compute, sink, self.version)

    def challengers(self, i: int, runner: ShadowRunner) -> list[Stage]:
        stages = []
        for c, ref in enumerate(runner.challengers):
            source = self.topic_map.challenger(self.workspace, self.name, self.version, i, c).name
            compute = StepCompute(
                lambda m, c=c: self.pipeline.run_challenger(i, c, m),
                finish=lambda m, started, c=c: self.pipeline.finish_shadow(
                    i, c, m, started_ns=started),
                max_batch_rows=self.settings.max_batch_rows)
            logs = self.topic_map.logs(self.workspace, self.name).name
            sink = self._sink(ShadowAnswer, (runner.label, ref.label()), logs=logs,
                              challenger=ref.name)
            stages.append(Stage(f"step-{i}-shadow-{c}", source, compute, sink, self.version))
        return stages
