"""`Model`: an uploaded model version, as the SDK hands it out."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine.definition import RuntimeName, TensorSpec
from engine.expressions import FieldRefs, model_refs

if TYPE_CHECKING:
    from control.sdk._session import Session


class Model:
    """One model version: name, version UUID, sha256, runtime, inputs and outputs."""

    def __init__(self, session: Session, record: dict[str, Any]) -> None:
        self._session = session
        self._record = record

    def to_dict(self) -> dict[str, Any]:
        """The model version as the server describes it (name, version, sha, runtime, inputs,
        outputs, and for an uploaded version its file, size, created and tags)."""
        return dict(self._record)

    @property
    def name(self) -> str:
        return str(self._record["name"])

    @property
    def version(self) -> str:
        return str(self._record["version"])

    @property
    def sha(self) -> str:
        return str(self._record["sha"])

    @property
    def runtime(self) -> str:
        return str(self._record["runtime"])

    @property
    def input_specs(self) -> list[TensorSpec]:
        return [TensorSpec(**t) for t in self._record.get("inputs", [])]

    @property
    def output_specs(self) -> list[TensorSpec]:
        return [TensorSpec(**t) for t in self._record.get("outputs", [])]

    @property
    def inputs(self) -> FieldRefs:
        """For validations: `model.inputs[0][3]`, `model.inputs["tensor"][0]`."""
        return model_refs(self.name).inputs

    @property
    def outputs(self) -> FieldRefs:
        """For validations: `model.outputs[0][0] < 100.0`, `model.outputs["variable"][0]`."""
        return model_refs(self.name).outputs

    def configure(self, runtime: RuntimeName = "onnx") -> Model:
        """Set the runtime ('onnx' or 'python'); the server checks the file loads with it.

        Example: `wl.upload_model("pre", "./preprocess.py").configure("python")`
        """
        record = self._session.json(
            "POST",
            f"/models/{self.name}/configure",
            json={"runtime": runtime, "version": self.version},
        )
        return Model(self._session, record)

    def __repr__(self) -> str:
        return (
            f"Model(name={self.name!r}, version={self.version!r}, sha={self.sha[:12]}…,"
            f" runtime={self.runtime!r})"
        )
