"""`Client`: the entry point of the SDK."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from control.names import check_name
from control.registry import DEFAULT_WORKSPACE
from control.sdk._display import Listing
from control.sdk._http import Api
from control.sdk.model import Model
from control.sdk.pipeline import Pipeline
from control.sdk.tags import Tag
from control.settings import Settings


class Workspace:
    """A workspace: pipelines and models live in one."""

    def __init__(self, record: dict[str, Any]) -> None:
        self.name = str(record["name"])
        self.created = record.get("created")

    def __repr__(self) -> str:
        return f"Workspace(name={self.name!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Workspace) and other.name == self.name

    def __hash__(self) -> int:
        return hash(self.name)


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

    # -- workspaces -----------------------------------------------------------------
    def create_workspace(self, name: str) -> Workspace:
        """Create a workspace (or return the existing one of that name)."""
        check_name(name, "workspace name")
        return Workspace(self._api.json("POST", "/workspaces", json={"name": name}))

    def list_workspaces(self) -> list[Workspace]:
        return [Workspace(r) for r in self._api.json("GET", "/workspaces")]

    def set_current_workspace(self, workspace: Workspace | str) -> Workspace:
        """Pipelines and models are created in, and listed from, the current workspace."""
        name = workspace.name if isinstance(workspace, Workspace) else workspace
        found = Workspace(self._api.json("GET", f"/workspaces/{check_name(name, 'workspace name')}"))
        self._workspace = found.name
        return found

    def get_current_workspace(self) -> Workspace:
        return Workspace(self._api.json("GET", f"/workspaces/{self._workspace}"))

    # -- models -------------------------------------------------------------------
    def upload_model(self, name: str, path: str | Path, *, runtime: str | None = None) -> Model:
        """Upload a model file (.onnx, or a .py step module); each upload is a new version.

        A Python step that needs packages weir does not have is a `.zip` of its module(s) and
        a `requirements.txt`: each worker runs it in a virtual environment built for those
        requirements (once, then cached), while the deploy shows the install's progress.

        The server checks the file loads (onnxruntime's reason if not) and records its sha256.
        """
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
        """The newest version of each model in the workspace (displays as a table)."""
        models = [Model(self, r) for r in self._api.json("GET", "/models", params=self._params())]
        return Listing(models, lambda m: {k: m._record.get(k) for k in
                                          ("name", "version", "runtime", "sha", "created", "tags")})

    # -- pipelines ------------------------------------------------------------------
    def build_pipeline(self, name: str) -> Pipeline:
        """A new pipeline, or the existing one of that name in the workspace."""
        check_name(name, "pipeline name")
        info = self._api.json("POST", "/pipelines", params=self._params(), json={"name": name})
        return Pipeline(self, info)

    def get_pipeline(self, name: str, version: str | None = None) -> Pipeline:
        """A pipeline, its steps from its newest version (or from `version`)."""
        info = self._api.json("GET", f"/pipelines/{name}", params=self._params())
        if version is not None:
            record = self._api.json("GET", f"/pipelines/{name}/versions/{version}",
                                    params=self._params())
            info = {**info, "definition": record["definition"]}
        return Pipeline(self, info)

    def list_pipelines(self) -> list[Pipeline]:
        """Pipelines in the workspace (displays as the guide's table)."""
        pipelines = [Pipeline(self, info)
                     for info in self._api.json("GET", "/pipelines", params=self._params())]
        return Listing(pipelines, lambda p: p._row())

    def import_bundle(self, path: str | Path) -> dict[str, Any]:
        """Register and deploy a bundle written by `pipeline.publish()` (files checked by sha256)."""
        result: dict[str, Any] = self._api.json("POST", "/import", params=self._params(),
                                                content=Path(path).read_bytes())
        return result

    # -- tags -----------------------------------------------------------------------
    def create_tag(self, text: str) -> Tag:
        self._api.json("POST", "/tags", params=self._params(), json={"tag": text})
        return Tag(self, text)

    def list_tags(self) -> list[Tag]:
        return [Tag(self, t) for t in self._api.json("GET", "/tags", params=self._params())]
