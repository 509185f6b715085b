"""`Pipeline`: build steps locally, version, deploy, infer and read logs."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa

from control.pipeline_status import PipelineStatus
from control.records import DeploymentConfig
from control.sdk._display import html_table, text_table
from control.sdk.deploy_wait import deploy_failed, wait_running
from control.sdk.logs import LogsMixin
from control.sdk.model import Model
from control.sdk.results import to_inference_result
from control.sdk.steps import (
    Arm,
    LocalStep,
    RandomSplit,
    RenamedOutputs,
    ShadowDeploy,
    from_definition,
    model_step,
    step_body,
)
from control.sdk.tail import follow_logs, follow_results, log_reader
from control.sdk.versions import PipelineVersion
from engine import codecs, expressions
from engine.errors import CodecError

if TYPE_CHECKING:
    from control.sdk._session import Session

DataFormat = Literal["pandas-records", "arrow"]
LIST_FIELDS = (
    "name",
    "created",
    "last_updated",
    "deployed",
    "tags",
    "versions",
    "steps",
    "published",
)


class _Deployment:
    """The guide's `pipeline._deployment._url()`."""

    def __init__(self, pipeline: Pipeline) -> None:
        self._pipeline = pipeline

    def _url(self) -> str:
        return self._pipeline.url()


class Pipeline(LogsMixin):
    """A pipeline in a workspace. Steps stay in this object until deploy() or create_version().

    Example:
        p = client.build_pipeline("houseprice").add_model_step(model)
        p.add_validation("price too high", model.outputs[0][0] < 100.0)
        p.deploy()
        p.infer(df)
    """

    def __init__(self, session: Session, info: dict[str, Any]) -> None:
        self._session = session
        self._info = info
        definition = info.get("definition") or {}
        self._steps: list[LocalStep] = [
            from_definition(session, s) for s in definition.get("steps", [])
        ]
        self._validations: dict[str, expressions.Expression] = {
            v["name"]: expressions.from_json(v["expression"])
            for v in definition.get("validations", [])
        }
        self._deployment = _Deployment(self)

    @property
    def name(self) -> str:
        return str(self._info["name"])

    def _path(self, suffix: str = "") -> str:
        return f"/pipelines/{self.name}{suffix}"

    def _call(self, method: str, suffix: str = "", **kwargs: Any) -> Any:
        return self._session.json(method, self._path(suffix), **kwargs)

    def _refresh(self) -> None:
        self._info = self._call("GET")

    # -- steps (local until deploy or create_version) -------------------------------
    def add_model_step(self, model: Model, *, outputs: Mapping[str, str] | None = None) -> Pipeline:
        """Append a step running `model`.

        `outputs` renames its outputs for the steps after it (and `out.*`), so a model
        generation that names its outputs differently replaces one step, not two:
        `p.add_model_step(ocr_v2, outputs={"fetch_name_0": "probs"})`.
        """
        self._steps.append(model_step(model, outputs))
        return self

    def replace_with_model_step(
        self, index: int, model: Model, *, outputs: Mapping[str, str] | None = None
    ) -> Pipeline:
        """Replace step `index` with a step running `model` (`outputs`: see add_model_step)."""
        self._steps[self._check_index(index)] = model_step(model, outputs)
        return self

    def remove_step(self, index: int) -> Pipeline:
        """Remove step `index`."""
        del self._steps[self._check_index(index)]
        return self

    def clear(self) -> Pipeline:
        """Remove every step (and validation)."""
        self._steps.clear()
        self._validations.clear()
        return self

    def add_random_split(
        self, weighted: Sequence[tuple[float, Arm]], hash_key: str | None = None
    ) -> Pipeline:
        """Append an A/B split: each row goes to one model (or chain), in proportion to the weights.

        Example: `p.add_random_split([(2, control), (1, challenger)])`. With `hash_key`,
        the row's value of that field picks the model, so a key always meets the same one
        (a float in [0, 1) is used as is; other values are hashed).
        """
        self._steps.append(RandomSplit(weighted, hash_key))
        return self

    def replace_with_random_split(
        self, index: int, weighted: Sequence[tuple[float, Arm]], hash_key: str | None = None
    ) -> Pipeline:
        """Replace step `index` with an A/B split (see add_random_split)."""
        self._steps[self._check_index(index)] = RandomSplit(weighted, hash_key)
        return self

    def add_shadow_deploy(self, champion: Model, challengers: Sequence[Model]) -> Pipeline:
        """Append a shadow step: the champion answers; every challenger sees the same rows
        and its outputs land in the logs (and `infer()`) as `out_<challenger>.<field>`."""
        self._steps.append(ShadowDeploy(champion, challengers))
        return self

    def replace_with_shadow_deploy(
        self, index: int, champion: Model, challengers: Sequence[Model]
    ) -> Pipeline:
        """Replace step `index` with a shadow step (see add_shadow_deploy)."""
        self._steps[self._check_index(index)] = ShadowDeploy(champion, challengers)
        return self

    def steps(self) -> list[LocalStep]:
        return list(self._steps)

    def _check_index(self, index: int) -> int:
        if not -len(self._steps) <= index < len(self._steps):
            valid = (
                f"0..{len(self._steps) - 1}" if self._steps else "none: the pipeline has no steps"
            )
            raise IndexError(f"step index {index} is out of range (valid: {valid})")
        return index

    def add_validation(self, name: str, validation: expressions.Expression | str) -> Pipeline:
        """Add a check: rows where `validation` is False get a check failure.

        Example: `p.add_validation("price too high", housing_model.outputs[0][0] < 100.0)`;
        text works too: `"housing-model.outputs[0][0] < 100.0"`.
        """
        expr = expressions.parse(validation) if isinstance(validation, str) else validation
        if not isinstance(expr, expressions.Expression):
            raise TypeError("validation must be an expression such as model.outputs[0][0] < 100.0")
        self._validations[name] = expr
        return self

    def _definition(self) -> dict[str, Any]:
        return {
            "steps": [step_body(step) for step in self._steps],
            "validations": [
                {"name": n, "expression": e.to_json()} for n, e in self._validations.items()
            ],
        }

    # -- versions and deployment ------------------------------------------------------
    def create_version(self) -> PipelineVersion:
        """Store the current steps as a pipeline version without deploying."""
        record = self._call("POST", "/versions", json=self._definition())
        self._refresh()
        return PipelineVersion(self, record)

    def versions(self) -> list[PipelineVersion]:
        """Every stored version, newest first."""
        return [PipelineVersion(self, r) for r in self._call("GET", "/versions")]

    def deploy(
        self,
        deployment_config: DeploymentConfig | None = None,
        *,
        timeout_s: float | None = None,
        quiet: bool = False,
    ) -> Pipeline:
        """Store a version if the steps changed, start its workers, wait until they run.

        Redeploying a running pipeline swaps versions without downtime. Shows
        'Waiting for deployment ... ok'; raises WaitForDeployError if the workers
        do not report Running in time (what this call started is undone).
        """
        version = self.create_version()
        return self.deploy_version(
            version.version, deployment_config, timeout_s=timeout_s, quiet=quiet
        )

    def deploy_version(
        self,
        version: str,
        config: DeploymentConfig | None,
        *,
        timeout_s: float | None = None,
        quiet: bool = False,
    ) -> Pipeline:
        """Deploy the stored `version` (what `deploy` and PipelineVersion.deploy do once the
        version exists); WaitForDeployError as `deploy` says."""
        redeploy = self._status().deployed
        body = {"version": version, "config": (config or DeploymentConfig()).model_dump()}
        self._call("POST", "/deploy", json=body)
        limit = timeout_s or self._session.settings.deploy_timeout_s
        started = time.monotonic()
        status = wait_running(self._status, version, limit, quiet, redeploy=redeploy)
        if status.runs(version):
            self._refresh()
            return self
        # A failed redeploy is undone by the server (the old version keeps serving);
        # a failed first deploy is undone here.
        if not redeploy:
            self.undeploy()
        raise deploy_failed(self.name, status, limit, time.monotonic() - started)

    def undeploy(self) -> Pipeline:
        """Stop the pipeline's workers."""
        self._info = self._call("POST", "/undeploy")
        return self

    def delete(self) -> None:
        """Delete the pipeline, its versions and its logs (undeploy it first; its Kafka topics
        are kept). `EntityNotFoundError` if it does not exist, `InUseError` while deployed."""
        self._call("DELETE")

    def status(self) -> dict[str, Any]:
        """The guide's status dict, built from worker heartbeats."""
        return self._status().model_dump()

    def _status(self) -> PipelineStatus:
        return PipelineStatus.model_validate(self._call("GET", "/status"))

    def topics(self) -> dict[str, str]:
        """The pipeline's stable Kafka topics: input, output, logs, dead_letter."""
        result: dict[str, str] = self._call("GET", "/topics")
        return result

    def url(self) -> str:
        """The HTTP inference endpoint."""
        return f"{self._session.server_url}{self._path()}"

    def publish(self, path: str | Path | None = None) -> Path:
        """Write the deployed version as a self-contained bundle (definition, model files,
        sha manifest) that `weir import BUNDLE` deploys on another stack."""
        response = self._session.request("POST", self._path("/publish"))
        target = Path(path or f"{self.name}.weir")
        target.write_bytes(response.content)
        self._refresh()
        return target

    # -- data ---------------------------------------------------------------------------
    def infer(self, data: Any, *, timeout: float | None = None) -> Any:
        """Run rows through the deployed pipeline.

        `data` is a pandas DataFrame, a pyarrow Table/RecordBatch, a list of row
        dicts, a dict of columns, or a numpy array with rows first (sent as the column
        `tensor`). It holds a column per input of the first model, named as the model
        names it; or, for a model with one input, one column named `tensor` holding each
        row's tensor as a list, or one plain column per feature (stacked in order).

        A pyarrow input gets a pyarrow.Table back; a dict of columns gets the guide's
        `[InferenceResult({...})]` (check_failures as `{'False': {'expr': ...}}`, outputs,
        shadow_data); anything else a DataFrame with time, in.*, out.*, check_failures,
        anomaly.* and metadata.*.
        """
        batch = codecs.to_record_batch(data)
        response = self._session.request(
            "POST",
            self._path(),
            params={"timeout": timeout},
            content=codecs.encode(batch, codecs.ARROW_FILE),
            headers={"content-type": codecs.ARROW_FILE},
        )
        result = codecs.decode(response.content, codecs.ARROW_FILE)
        if isinstance(data, (pa.Table, pa.RecordBatch)):
            return pa.Table.from_batches([result])
        if isinstance(data, dict):  # the guide's dict in, [InferenceResult] out
            models = [s.model if isinstance(s, RenamedOutputs) else s for s in self._steps]
            last = next((m for m in reversed(models) if isinstance(m, Model)), None)
            default = (last.name, last.version) if last else ("", "")
            return [
                to_inference_result(
                    pa.Table.from_batches([result]), self.name, self._validations, default
                )
            ]
        return codecs.batch_to_pandas(result)

    def tail(
        self, *, logs: bool = False, ready: Callable[[], None] = lambda: None
    ) -> Iterator[pa.RecordBatch | pa.Table]:
        """Follow the pipeline until the generator is closed: each answer on its result topic
        from now on, as it arrives (as `kcat -C` would; needs the Kafka bootstrap servers of
        `weir up` or WEIR_KAFKA_BOOTSTRAP); or with `logs=True` its new log rows, oldest
        first. Rows carry their `request_id`. `ready` is called once following has begun.

        Example: `for rows in pipeline.tail(): print(rows.to_pylist())`
        """
        if logs:
            return follow_logs(log_reader(self.logs, limit=1000), ready=ready)
        return follow_results(
            self._session.settings.kafka_bootstrap, self.topics()["output"], ready=ready
        )

    def infer_from_file(
        self,
        path: str | Path,
        *,
        data_format: DataFormat | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Infer on a `.json` (pandas records) or `.arrow` (Arrow IPC file) file;
        `data_format` overrides the guess from the suffix. Arrow files give a pyarrow.Table."""
        path = Path(path)
        fmt = data_format or (
            "arrow" if path.suffix in (".arrow", ".feather") else "pandas-records"
        )
        content_type = codecs.ARROW_FILE if fmt == "arrow" else codecs.PANDAS_RECORDS
        try:
            batch = codecs.decode(path.read_bytes(), content_type)
        except CodecError as exc:
            raise CodecError(f"{path}: {exc}") from exc
        return self.infer(
            pa.Table.from_batches([batch]) if fmt == "arrow" else codecs.batch_to_pandas(batch),
            timeout=timeout,
        )

    # -- display ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The pipeline as the server describes it: the guide's listing fields, its workspace,
        deployed version and newest definition."""
        return dict(self._info)

    def listing_row(self) -> dict[str, Any]:
        """The pipeline's row in the guide's `list_pipelines()` table."""
        row = {f: self._info.get(f) for f in LIST_FIELDS}
        row["steps"] = [m.name for m in self._steps]
        return row

    def __repr__(self) -> str:
        return text_table([self.listing_row()], vertical=True)

    def _repr_html_(self) -> str:
        return html_table([self.listing_row()], vertical=True)
