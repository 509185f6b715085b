"""`Client`: the entry point of the SDK."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from control.names import check_name
from control.registry import DEFAULT_WORKSPACE
from control.sdk._display import Listing
from control.sdk._http import Api
from control.sdk._session import Session
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

    def __init__(
        self,
        server_url: str | None = None,
        token: str | None = None,
        *,
        workspace: str = DEFAULT_WORKSPACE,
        settings: Settings | None = None,
    ) -> None:
        settings = settings or Settings.discover()
        if server_url or token:
            settings = settings.model_copy(
                update={k: v for k, v in (("server_url", server_url), ("token", token)) if v}
            )
        self._session = Session(Api.from_settings(settings), settings, workspace)

    # -- workspaces -----------------------------------------------------------------
    def create_workspace(self, name: str) -> Workspace:
        """Create a workspace (or return the existing one of that name)."""
        check_name(name, "workspace name")
        return Workspace(self._session.api.json("POST", "/workspaces", json={"name": name}))

    def list_workspaces(self) -> list[Workspace]:
        return [Workspace(r) for r in self._session.api.json("GET", "/workspaces")]

    def set_current_workspace(self, workspace: Workspace | str) -> Workspace:
        """Pipelines and models are created in, and listed from, the current workspace."""
        name = workspace.name if isinstance(workspace, Workspace) else workspace
        found = Workspace(
            self._session.api.json("GET", f"/workspaces/{check_name(name, 'workspace name')}")
        )
        self._session.workspace = found.name
        return found

    def get_current_workspace(self) -> Workspace:
        return Workspace(self._session.api.json("GET", f"/workspaces/{self._session.workspace}"))

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
        record = self._session.json(
            "POST",
            f"/models/{name}",
            params={"filename": Path(path).name, "runtime": runtime},
            content=data,
            headers={
                "x-content-sha256": hashlib.sha256(data).hexdigest(),
                "content-type": "application/octet-stream",
            },
        )
        return Model(self._session, record)

    def get_model(self, name: str, version: str | None = None) -> Model:
        """A model version (the newest by default)."""
        return Model(
            self._session, self._session.json("GET", f"/models/{name}", params={"version": version})
        )

    def list_models(self) -> list[Model]:
        """The newest version of each model in the workspace (displays as a table)."""
        models = [Model(self._session, r) for r in self._session.json("GET", "/models")]
        return Listing(
            models,
            lambda m: {
                k: m.to_dict().get(k)
                for k in ("name", "version", "runtime", "sha", "created", "tags")
            },
        )

    # -- pipelines ------------------------------------------------------------------
    def build_pipeline(self, name: str) -> Pipeline:
        """A new pipeline, or the existing one of that name in the workspace."""
        check_name(name, "pipeline name")
        info = self._session.json("POST", "/pipelines", json={"name": name})
        return Pipeline(self._session, info)

    def get_pipeline(self, name: str, version: str | None = None) -> Pipeline:
        """A pipeline, its steps from its newest version (or from `version`)."""
        info = self._session.json("GET", f"/pipelines/{name}")
        if version is not None:
            record = self._session.json("GET", f"/pipelines/{name}/versions/{version}")
            info = {**info, "definition": record["definition"]}
        return Pipeline(self._session, info)

    def list_pipelines(self) -> list[Pipeline]:
        """Pipelines in the workspace (displays as the guide's table); one request."""
        pipelines = [
            Pipeline(self._session, info) for info in self._session.json("GET", "/pipelines")
        ]
        return Listing(pipelines, lambda p: p.listing_row())

    def delete_pipeline(self, name: str) -> None:
        """Delete an undeployed pipeline, its versions and its logs (see Pipeline.delete)."""
        self._session.json("DELETE", f"/pipelines/{name}")

    def delete_model(self, name: str) -> None:
        """Delete every version of a model, and its files; refused (`InUseError`) while a
        version of some pipeline runs it: delete those pipelines first."""
        self._session.json("DELETE", f"/models/{name}")

    def import_bundle(self, path: str | Path) -> dict[str, Any]:
        """Register and deploy a bundle written by `pipeline.publish()` (files checked by sha256)."""
        result: dict[str, Any] = self._session.json(
            "POST", "/import", content=Path(path).read_bytes()
        )
        return result

    # -- tags -----------------------------------------------------------------------
    def create_tag(self, text: str) -> Tag:
        self._session.json("POST", "/tags", json={"tag": text})
        return Tag(self._session, text)

    def list_tags(self) -> list[Tag]:
        return [Tag(self._session, t) for t in self._session.json("GET", "/tags")]
