"""The SDK's local steps: what a Pipeline holds until deploy() or create_version()."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from control.sdk.model import Model

if TYPE_CHECKING:
    from control.sdk._session import Session

Arm = Model | Sequence[Model]
"""One side of a split: a model, or a chain of models (e.g. pre-processing then a model)."""


def _ref(model: Model) -> dict[str, str]:
    return {"name": model.name, "version": model.version}


class RandomSplit:
    """An A/B split step (see `Pipeline.add_random_split`)."""

    def __init__(self, weighted: Sequence[tuple[float, Arm]], hash_key: str | None) -> None:
        if not weighted:
            raise ValueError("a random split needs at least one (weight, model) pair")
        self.arms: list[tuple[float, list[Model]]] = []
        for pair in weighted:
            if not (isinstance(pair, tuple) and len(pair) == 2):
                raise ValueError(f"each split entry must be (weight, model), got {pair!r}")
            weight, arm = pair
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight > 0:
                raise ValueError(f"split weights must be positive numbers, got {weight!r}")
            chain = [arm] if isinstance(arm, Model) else list(arm)
            if not chain or not all(isinstance(m, Model) for m in chain):
                raise ValueError(f"a split arm must be a Model or a list of Models, got {arm!r}")
            self.arms.append((float(weight), chain))
        self.hash_key = hash_key

    @property
    def name(self) -> str:
        arms = ", ".join(f"{' > '.join(m.name for m in chain)}:{w:g}" for w, chain in self.arms)
        return f"random_split({arms})"

    def body(self) -> dict[str, Any]:
        return {
            "kind": "random_split",
            "hash_key": self.hash_key,
            "arms": [{"weight": w, "models": [_ref(m) for m in chain]} for w, chain in self.arms],
        }

    def __repr__(self) -> str:
        return self.name


class ShadowDeploy:
    """A shadow step (see `Pipeline.add_shadow_deploy`)."""

    def __init__(self, champion: Model, challengers: Sequence[Model]) -> None:
        if not isinstance(champion, Model):
            raise ValueError(f"the champion must be a Model, got {champion!r}")
        if not challengers or not all(isinstance(c, Model) for c in challengers):
            raise ValueError("a shadow deploy needs one or more challenger Models")
        self.champion = champion
        self.challengers = list(challengers)

    @property
    def name(self) -> str:
        return f"shadow({self.champion.name} vs {', '.join(c.name for c in self.challengers)})"

    def body(self) -> dict[str, Any]:
        return {
            "kind": "shadow",
            "champion": _ref(self.champion),
            "challengers": [_ref(c) for c in self.challengers],
        }

    def __repr__(self) -> str:
        return self.name


class RenamedOutputs:
    """A model step whose outputs later steps see by other names (see `Pipeline.add_model_step`)."""

    def __init__(self, model: Model, outputs: Mapping[str, str]) -> None:
        if not isinstance(model, Model):
            raise ValueError(f"a model step needs a Model, got {model!r}")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in outputs.items()):
            raise ValueError(f"an output map maps output names to names, got {dict(outputs)!r}")
        declared = [spec.name for spec in model.output_specs]
        unknown = sorted(set(outputs) - set(declared)) if declared else []
        if unknown:
            raise ValueError(
                f"model {model.name!r} has no outputs {unknown} (its outputs: "
                f"{declared}); map those names"
            )
        self.model = model
        self.outputs = dict(outputs)

    @property
    def name(self) -> str:
        return self.model.name

    def body(self) -> dict[str, Any]:
        return {"kind": "model", "model": _ref(self.model), "outputs": self.outputs}

    def __repr__(self) -> str:
        return f"{self.model.name}(outputs {self.outputs})"


LocalStep = Model | RenamedOutputs | RandomSplit | ShadowDeploy


def model_step(model: Model, outputs: Mapping[str, str] | None) -> Model | RenamedOutputs:
    """A model step, with its output map if it has one."""
    return RenamedOutputs(model, outputs) if outputs else model


def step_body(step: LocalStep) -> dict[str, Any]:
    if isinstance(step, Model):
        return {"kind": "model", "model": _ref(step)}
    return step.body()


def from_definition(session: Session, step: dict[str, Any]) -> LocalStep:
    """A stored step (engine.definition JSON) back as a local step; its model references are
    complete (name, version, sha, runtime, signature), so this asks the server nothing."""

    def model(ref: dict[str, Any]) -> Model:
        return Model(session, ref)

    if step["kind"] == "random_split":
        return RandomSplit(
            [(arm["weight"], [model(m) for m in arm["models"]]) for arm in step["arms"]],
            step.get("hash_key"),
        )
    if step["kind"] == "shadow":
        return ShadowDeploy(model(step["champion"]), [model(c) for c in step["challengers"]])
    return model_step(model(step["model"]), step.get("outputs"))
