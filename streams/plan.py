"""Which stages a worker runs for a deployment: spans of fused steps, sidekicks, challengers.

A version's steps run fused: a main worker reads the input topic and runs every
step in process on each micro-batch, up to the result (streams.compute.span).
The chain is cut only where a step runs as a sidekick (its model has sidekick
settings in the deployment: its own workers, resources and replicas):

    steps 0..k-1   main worker      input topic   -> boundary s<k>
    step k         sidekick worker  boundary s<k> -> boundary s<k+1> (or the result topic)
    steps k+1..    main worker      boundary s<k+1> -> result topic

Only the main workers read the input topic, even when step 0 is a sidekick: then
their first span holds no step and forwards the input to boundary s0. The input's
offsets are the main group's, which every version shares, so a swap between
versions with and without sidekicks resumes where the other left off (a sidekick
group reading the input would start from its own, stale or missing, offsets).

A shadow step's champion runs in the span that holds the step, which fans the
step's input out to one topic per challenger; "shadow" workers run the
challengers, in processes of their own, so a slow or crashing challenger
cannot hold back or fail the champion's answers. A split runs whole in its
span: each row through its arm, the rows back in input order.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal

from engine.answers import ResultFormat
from engine.definition import PipelineSpec, ShadowStep
from engine.pipeline import CompiledPipeline
from engine.steps import ShadowRunner
from streams.compute import StageCompute, finisher, span
from streams.metrics import WorkerMetrics
from streams.settings import WorkerSettings
from streams.sinks import Forward, ShadowAnswer
from streams.stage import Stage
from streams.topics import TopicMap

WorkerRole = Literal["main", "shadow", "sidekick"]


class SidekickError(ValueError):
    """Sidekick settings that name no model of the version, or two models of one step."""


def has_shadows(spec: PipelineSpec) -> bool:
    """Whether a version needs shadow workers."""
    return any(isinstance(step, ShadowStep) for step in spec.steps)


def sidekick_steps(spec: PipelineSpec, models: Collection[str]) -> dict[int, str]:
    """The steps that run as sidekicks, by index: those with a model in `models` (the
    models given sidekick settings), with that model's name. A shadow step's challengers
    run in shadow workers anyway; a split runs whole, as its arm's sidekick."""
    steps: dict[int, str] = {}
    for index, step in enumerate(spec.steps):
        named = {
            ref.name for ref in ([step.champion] if isinstance(step, ShadowStep) else step.models())
        } & set(models)
        if len(named) > 1:
            raise SidekickError(
                f"step {index} ({step.summary()}) has sidekick settings for "
                f"{sorted(named)}; give them to one model of a step only"
            )
        if named:
            steps[index] = named.pop()
    unknown = set(models) - {ref.name for ref in spec.models()}
    if unknown:
        raise SidekickError(
            f"sidekick settings name {sorted(unknown)}, which the pipeline does "
            f"not run (its models: {sorted(r.name for r in spec.models())})"
        )
    return steps


@dataclass(frozen=True)
class Layout:
    """Where one deployment of a version cuts its chain, and what its topics are called."""

    workspace: str
    pipeline: str
    deployment: str
    """The deployment's id: its topics are its own (streams.topics `{deployment}`)."""
    sidekicks: frozenset[int] = frozenset()
    """The steps that run as sidekicks."""

    def spans(self, steps: int) -> list[tuple[int, int]]:
        """The main workers' spans: (first step, the step after the last). The first starts
        at 0 and reads the input topic; it holds no step (0, 0) when step 0 is a sidekick."""
        out = []
        for start in [0, *(k + 1 for k in sorted(self.sidekicks))]:
            if start >= steps or (start in self.sidekicks and start > 0):
                continue
            stop = min([k for k in self.sidekicks if k >= start] + [steps])
            out.append((start, stop))
        return out


def worker_stages(
    pipeline: CompiledPipeline,
    layout: Layout,
    topic_map: TopicMap,
    role: WorkerRole,
    settings: WorkerSettings,
    sidekick: int | None = None,
    metrics: WorkerMetrics | None = None,
    result_format: ResultFormat = "request",
) -> list[Stage]:
    """The stages a worker of `role` runs (a sidekick worker: for step `sidekick`); each
    step's micro-batches are counted in `metrics`, and requests are answered as
    `result_format` says (engine.answers)."""
    build = _Builder(pipeline, layout, topic_map, settings, metrics, result_format)
    if role == "main":
        return [build.span(start, stop) for start, stop in layout.spans(len(pipeline.steps))]
    if role == "sidekick":
        assert sidekick is not None and sidekick in layout.sidekicks, "which sidekick step?"
        return [build.span(sidekick, sidekick + 1)]
    return [
        stage
        for index, runner in enumerate(pipeline.steps)
        if isinstance(runner, ShadowRunner)
        for stage in build.challengers(index, runner)
    ]


FORWARD = "input"
"""The name (in metrics and logs) of a main span of no step: the input forwarded to a
first-step sidekick."""


def step_name(index: int) -> str:
    """A step's name in metrics and logs."""
    return f"step-{index}"


@dataclass
class _Builder:
    pipeline: CompiledPipeline
    layout: Layout
    topic_map: TopicMap
    settings: WorkerSettings
    metrics: WorkerMetrics | None = None
    result_format: ResultFormat = "request"

    def _observe(self, index: int, messages: int, rows: int, seconds: float) -> None:
        if self.metrics is not None:
            self.metrics.received(step_name(index), records=messages, rows=rows)
            self.metrics.batch(step_name(index), rows=rows, seconds=seconds)

    def _topic(self, index: int) -> str:
        """The topic feeding step `index`, or the result topic past the last step."""
        m, ws, p = self.topic_map, self.layout.workspace, self.layout.pipeline
        if index == 0 and 0 not in self.layout.sidekicks:
            return m.input(ws, p).name
        if index == len(self.pipeline.steps):
            return m.output(ws, p).name
        return m.boundary(ws, p, self.layout.deployment, index).name

    def _labels(self, start: int, stop: int) -> dict[int, tuple[str, str]]:
        return {
            i: (self.pipeline.steps[i].label, self.pipeline.steps[i].last_model.label())
            for i in range(start, stop)
        }

    def _challenger_topics(self, index: int) -> tuple[str, ...]:
        runner = self.pipeline.steps[index]
        assert isinstance(runner, ShadowRunner)
        return tuple(
            self.topic_map.challenger(
                self.layout.workspace, self.layout.pipeline, self.layout.deployment, index, c
            ).name
            for c in range(len(runner.challengers))
        )

    def span(self, start: int, stop: int) -> Stage:
        """Steps `start`..`stop - 1`, fused, from their topic to the next (no step: the input
        forwarded, decoded and checked, to a first-step sidekick)."""
        m, ws, p = self.topic_map, self.layout.workspace, self.layout.pipeline
        ends = stop == len(self.pipeline.steps)
        source = m.input(ws, p).name if start == stop == 0 else self._topic(start)
        compute = StageCompute(
            span(self.pipeline, start, stop, self._observe),
            finish=finisher(self.pipeline) if ends else None,
            starts=source == m.input(ws, p).name,
            max_batch_rows=self.settings.max_batch_rows,
            max_bytes=self.settings.max_message_bytes,
        )
        challengers = {
            i: self._challenger_topics(i)
            for i in range(start, stop)
            if isinstance(self.pipeline.steps[i], ShadowRunner)
        }
        sink = Forward(
            labels=self._labels(start, stop),
            output=m.output(ws, p).name,
            dead_letter=m.dead_letter(ws, p).name,
            max_bytes=self.settings.max_message_bytes,
            next=self._topic(stop),
            challengers=challengers,
        )
        name = (
            FORWARD
            if start == stop
            else step_name(start)
            if stop - start == 1
            else f"steps-{start}-{stop - 1}"
        )
        return Stage(
            name,
            source,
            compute,
            sink,
            self.pipeline.version,
            last_step=FORWARD if start == stop else step_name(stop - 1),
            result_format=self.result_format,
        )

    def challengers(self, index: int, runner: ShadowRunner) -> list[Stage]:
        m, ws, p = self.topic_map, self.layout.workspace, self.layout.pipeline
        stages = []
        for c, (ref, source) in enumerate(zip(runner.challengers, self._challenger_topics(index))):
            compute = StageCompute(  # c=c binds this challenger (mypy infers no defaults)
                lambda message, _pass, c=c: self.pipeline.run_challenger(  # type: ignore[misc]
                    index, c, message
                ),
                finish=lambda message, started, c=c: self.pipeline.finish_shadow(  # type: ignore[misc]
                    index, c, message, started_ns=started
                ),
                max_batch_rows=self.settings.max_batch_rows,
            )
            sink = ShadowAnswer(
                labels={index: (runner.label, ref.label())},
                output=m.output(ws, p).name,
                dead_letter=m.dead_letter(ws, p).name,
                max_bytes=self.settings.max_message_bytes,
                logs=m.logs(ws, p).name,
                challenger=ref.name,
            )
            name = f"{step_name(index)}-shadow-{c}"
            stages.append(Stage(name, source, compute, sink, self.pipeline.version, last_step=name))
        return stages
