"""`Tag`: a label on pipelines and models."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from control.sdk._session import Session
    from control.sdk.model import Model
    from control.sdk.pipeline import Pipeline


def _name(target: object) -> str:
    return str(getattr(target, "name", target))


class Tag:
    """Example: `wl.create_tag("prod").add_to_pipeline(pipeline)`."""

    def __init__(self, session: Session, tag: str) -> None:
        self._session = session
        self.tag = tag

    def _set(self, kind: str, target: object, remove: bool) -> None:
        self._session.json(
            "POST",
            f"/tags/{self.tag}/{kind}/{_name(target)}",
            params={"remove": str(remove).lower()},
        )

    def add_to_pipeline(self, pipeline: Pipeline | str) -> Tag:
        self._set("pipelines", pipeline, remove=False)
        return self

    def remove_from_pipeline(self, pipeline: Pipeline | str) -> Tag:
        self._set("pipelines", pipeline, remove=True)
        return self

    def add_to_model(self, model: Model | str) -> Tag:
        self._set("models", model, remove=False)
        return self

    def remove_from_model(self, model: Model | str) -> Tag:
        self._set("models", model, remove=True)
        return self

    def __repr__(self) -> str:
        return f"Tag({self.tag!r})"
