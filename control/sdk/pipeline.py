"""`Pipeline`: build steps locally, version, deploy, infer and read logs."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from control.errors import WaitForDeployError
from control.records import DeploymentConfig
from control.sdk.model import Model
from engine import codecs

if TYPE_CHECKING:
    import pandas as pd

    from control.sdk.client import Client


class _Deployment:
    """The guide's `pipeline._deployment._url()`."""

    def __init__(self, pipeline: Pipeline) -> None:
        self._pipeline = pipeline

    def _url(self) -> str:
        return self._pipeline.url()


class Pipeline:
    """A pipeline in the current workspace. Steps stay here until deploy() or create_version().

    Example:
        p = client.build_pipeline("houseprice").add_model_step(model)
        p.deploy()
        p.infer(df)
    """

    def __init__(self, client: Client, info: dict[str, Any]) -> None:
        self._client = client
        self._info = info
        self._steps: list[Model] = [
            client.get_model(s["model"]["name"], s["model"]["version"])
            for s in (info.get("definition") or {}).get("steps", [])
        ]
        self._deployment = _Deployment(self)

    @property
    def name(self) -> str:
        return str(self._info["name"])

    def _path(self, suffix: str = "") -> str:
        return f"/pipelines/{self.name}{suffix}"

    def _refresh(self) -> None:
        self._info = self._client._api.json("GET", self._path(), params=self._client._params())

    # -- steps ----------------------------------------------------------------
    def add_model_step(self, model: Model) -> Pipeline:
        """Append a step running `model`."""
        self._steps.append(model)
        return self

    def steps(self) -> list[Model]:
        return list(self._steps)

    def _definition(self) -> dict[str, Any]:
        return {"steps": [{"kind": "model", "model": {"name": m.name, "version": m.version}}
                          for m in self._steps]}

    # -- versions and deployment ------------------------------------------------
    def create_version(self) -> dict[str, Any]:
        """Store the current steps as a pipeline version without deploying."""
        record: dict[str, Any] = self._client._api.json(
            "POST", self._path("/versions"), params=self._client._params(), json=self._definition())
        self._refresh()
        return record

    def deploy(self, deployment_config: DeploymentConfig | None = None, *,
               timeout_s: float | None = None, quiet: bool = False) -> Pipeline:
        """Store a version if the steps changed, start its workers, wait until they run.

        Shows 'Waiting for deployment ... ok'. Raises WaitForDeployError (after
        undeploying) if the workers do not report Running in time.
        """
        version = self.create_version()
        config = (deployment_config or DeploymentConfig()).model_dump()
        self._client._api.json("POST", self._path("/deploy"), params=self._client._params(),
                               json={"version": version["version"], "config": config})
        limit = timeout_s or self._client._settings.deploy_timeout_s
        out = sys.stderr
        if not quiet:
            out.write(f"Waiting for deployment - this will take up to {limit:.0f}s ")
            out.flush()
        deadline = time.monotonic() + limit
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            status = self.status()
            if status.get("status") == "Running" and status.get("version") == version["version"]:
                if not quiet:
                    out.write(" ok\n")
                self._refresh()
                return self
            if status.get("status") == "Error":
                break
            if not quiet:
                out.write(".")
                out.flush()
            time.sleep(0.25)
        if not quiet:
            out.write(" failed\n")
        self.undeploy()
        reasons = [e.get("reason") for e in status.get("engines", []) if e.get("reason")]
        raise WaitForDeployError(
            f"pipeline {self.name!r} did not reach Running within {limit:.0f}s "
            f"(last status {status.get('status')!r}{': ' + '; '.join(reasons) if reasons else ''}); "
            "it was undeployed. Check the models load (weir models list) and the worker logs "
            "under WEIR_HOME/run/logs")

    def undeploy(self) -> Pipeline:
        """Stop the pipeline's workers."""
        self._info = self._client._api.json("POST", self._path("/undeploy"),
                                            params=self._client._params())
        return self

    def status(self) -> dict[str, Any]:
        """The guide's status dict, built from worker heartbeats."""
        result: dict[str, Any] = self._client._api.json("GET", self._path("/status"),
                                                        params=self._client._params())
        return result

    def topics(self) -> dict[str, str]:
        """The pipeline's stable Kafka topics: input, output, logs, dead_letter."""
        result: dict[str, str] = self._client._api.json("GET", self._path("/topics"),
                                                        params=self._client._params())
        return result

    def url(self) -> str:
        """The HTTP inference endpoint."""
        return f"{self._client._api.server_url}{self._path()}"

    # -- data -------------------------------------------------------------------
    def infer(self, data: Any, *, timeout: float | None = None) -> Any:
        """Run rows through the deployed pipeline.

        `data` is a pandas DataFrame, a pyarrow Table/RecordBatch, a list of row
        dicts or a dict of columns; a pyarrow input gets a pyarrow.Table back,
        anything else a DataFrame with time, in.*, out.*, check_failures and metadata.
        """
        batch = codecs.to_record_batch(data)
        params = self._client._params()
        if timeout is not None:
            params["timeout"] = str(timeout)
        response = self._client._api.request(
            "POST", self._path(), params=params,
            content=codecs.encode(batch, codecs.ARROW_FILE),
            headers={"content-type": codecs.ARROW_FILE})
        result = codecs.decode(response.content, codecs.ARROW_FILE)
        if isinstance(data, (pa.Table, pa.RecordBatch)):
            return pa.Table.from_batches([result])
        return codecs.batch_to_pandas(result)

    def logs(self, limit: int = 100, *, valid: bool | None = None, arrow: bool = False
             ) -> pd.DataFrame | pa.Table:
        """The newest `limit` log rows (newest first); a DataFrame, or a pyarrow.Table with arrow=True."""
        params: dict[str, str] = {**self._client._params(), "limit": str(limit), "format": "arrow"}
        if valid is not None:
            params["valid"] = str(valid).lower()
        response = self._client._api.request("GET", self._path("/logs"), params=params)
        batch = codecs.decode(response.content, codecs.ARROW_FILE)
        return pa.Table.from_batches([batch]) if arrow else codecs.batch_to_pandas(batch)

    def __repr__(self) -> str:
        steps = ", ".join(m.name for m in self._steps)
        return f"Pipeline(name={self.name!r}, steps=[{steps}], deployed={self._info.get('deployed')})"
