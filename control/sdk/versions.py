"""`PipelineVersion`: one stored version of a pipeline, as `pipeline.versions()` lists them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from control.records import DeploymentConfig
from control.sdk._display import html_table, text_table

if TYPE_CHECKING:
    from control.sdk.pipeline import Pipeline

FIELDS = ("name", "version", "creation_time", "last_updated_time", "deployed", "tags", "steps")


class PipelineVersion:
    """A stored set of steps; deploy it to roll a pipeline back (or forward) to it."""

    def __init__(self, pipeline: Pipeline, record: dict[str, Any]) -> None:
        self._pipeline = pipeline
        self._record = record

    def name(self) -> str:
        return str(self._record["pipeline"])

    @property
    def version(self) -> str:
        return str(self._record["version"])

    @property
    def creation_time(self) -> str:
        return str(self._record["created"])

    @property
    def last_updated_time(self) -> str:
        return str(self._record["last_updated"])

    @property
    def deployed(self) -> bool:
        return bool(self._record["deployed"])

    @property
    def tags(self) -> list[str]:
        return list(self._record["tags"])

    @property
    def steps(self) -> list[str]:
        return list(self._record["steps"])

    def model_configs(self) -> list[dict[str, Any]]:
        """The models this version runs (name, version, sha)."""
        return [s["model"] for s in self._record["definition"]["steps"]]

    def deploy(
        self,
        deployment_name: str | None = None,
        model_configs: object = None,
        config: DeploymentConfig | None = None,
        *,
        quiet: bool = False,
    ) -> Pipeline:
        """Deploy this version (the guide's `pipeline_version.deploy(name, model_configs())`).

        `deployment_name` and `model_configs` are accepted for the guide's signature; the
        version already fixes its models.
        """
        return self._pipeline.deploy_version(self.version, config, quiet=quiet)

    def to_dict(self) -> dict[str, Any]:
        """The guide's fields of the version."""
        return {f: getattr(self, f)() if f == "name" else getattr(self, f) for f in FIELDS}

    def __repr__(self) -> str:
        return text_table([self.to_dict()], vertical=True)

    def _repr_html_(self) -> str:
        return html_table([self.to_dict()], vertical=True)
