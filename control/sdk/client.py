"""`Client`: the entry point of the SDK."""

from __future__ import annotations

import hashlib
from pathlib import Path

from control.names import check_name
from control.registry import DEFAULT_WORKSPACE
from control.sdk._http import Api
from control.sdk.model import Model
from control.sdk.pipeline import Pipeline
from control.settings import Settings


class Client:
    """A connection to a weir server.

    With no arguments it finds the stack `weir up` started (WEIR_HOME/stack.json)
    or the WEIR_SERVER_URL / WEIR_TOKEN variables.

    Example:
        wl = Client()
        model = wl.upload_model("diabetes", "diabetes.onnx").configure("onnx")
        pipeline = wl.build_pipeline("diabetes").add_model_step(model).deploy()
    """

    def __init__(self, server_url: str | None = None, token: str | None = None, *,
                 workspace: str = DEFAULT_WORKSPACE, settings: Settings | None = None) -> None:
        self._settings = settings or Settings.discover()
        if server_url or token:
            self._settings = self._settings.model_copy(
                update={k: v for k, v in (("server_url", server_url), ("token", token)) if v})
        self._api = Api.from_settings(self._settings)
        self._workspace = workspace

    def _params(self) -> dict[str, str]:
        return {"workspace": self._workspace}

    # -- models -------------------------------------------------------------------
    def upload_model(self, name: str, path: str | Path, *, runtime: str | None = None) -> Model:
        """Upload a model file (.onnx or a .py step module); each upload is a new version."""
        check_name(name, "model name")
        data = Path(path).read_bytes()
        params = {**self._params(), "filename": Path(path).name}
        if runtime:
            params["runtime"] = runtime
        record = self._api.json("POST", f"/models/{name}", params=params, content=data,
                                headers={"x-content-sha256": hashlib.sha256(data).hexdigest(),
                                         "content-type": "application/octet-stream"})
        return Model(self, record)

    def get_model(self, name: str, version: str | None = None) -> Model:
        """A model version (the newest by default)."""
        params = self._params() | ({"version": version} if version else {})
        return Model(self, self._api.json("GET", f"/models/{name}", params=params))

    def list_models(self) -> list[Model]:
        return [Model(self, r) for r in self._api.json("GET", "/models", params=self._params())]

    # -- pipelines ------------------------------------------------------------------
    def build_pipeline(self, name: str) -> Pipeline:
        """A new pipeline, or the existing one of that name in the workspace."""
        check_name(name, "pipeline name")
        info = self._api.json("POST", "/pipelines", params=self._params(), json={"name": name})
        return Pipeline(self, info)

    def get_pipeline(self, name: str) -> Pipeline:
        return Pipeline(self, self._api.json("GET", f"/pipelines/{name}", params=self._params()))

    def list_pipelines(self) -> list[Pipeline]:
        return [Pipeline(self, info) for info in self._api.json("GET", "/pipelines",
                                                                params=self._params())]
