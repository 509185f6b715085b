"""Errors of the control plane: registry, deployer, stack and SDK.

All derive from `engine.errors.WeirError`; the HTTP server maps each class to a
status code in `control/server/errors.py`, and the SDK turns a server's error
body back into the same class.
"""

from __future__ import annotations

from engine.errors import WeirError


class StackError(WeirError):
    """The embedded stack could not start, or is not running."""


class RegistryUnavailable(WeirError):
    """Redis, which holds the registry, does not answer: what needs it waits until it is back.

    Deployed pipelines keep serving meanwhile (workers run what they loaded; the gateway
    answers from the deployments it looked up last)."""

    def __init__(self, url: str, cause: str = "") -> None:
        super().__init__(
            f"Redis at {url} is unreachable"
            + (f" ({cause})" if cause else "")
            + ": the registry (workspaces, models, pipelines, deployments) cannot be read or "
            "changed until it is back, though deployed pipelines keep serving; start it again "
            "(`weir up` restarts the embedded one) or check WEIR_REDIS_URL"
        )
        self.url = url


class InvalidNameError(WeirError):
    """A name breaks its rule (pipelines, models, workspaces: DNS labels; files, versions)."""

    RULE = (
        "names must be lowercase ASCII letters, digits and '-', start and end "
        "with a letter or digit, and be at most 63 characters"
    )

    def __init__(self, name: str, kind: str = "name", rule: str = RULE) -> None:
        super().__init__(f"invalid {kind} {name!r}: {rule}")
        self.name = name


class EntityNotFoundError(WeirError):
    """A named workspace, model, pipeline or version does not exist."""

    def __init__(self, kind: str, name: str, hint: str = "") -> None:
        super().__init__(f"{kind} {name!r} not found" + (f": {hint}" if hint else ""))
        self.kind = kind
        self.name = name


class LimitError(WeirError):
    """Deploying would exceed the configured number of deployed pipelines."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"at most {limit} pipelines may be deployed at once (WEIR_MAX_PIPELINES); "
            "undeploy a pipeline you do not need, then deploy again: MAX_PIPELINES_LIMIT_EXCEEDED"
        )


class ConfigError(WeirError):
    """A deployment setting is unusable (`DeploymentConfigBuilder`)."""


class InUseError(WeirError):
    """A pipeline or model cannot be deleted while it is deployed or used."""


class DeploymentError(WeirError):
    """A deployment could not be started or stopped."""


class WaitForDeployError(WeirError):
    """Workers did not report Running in time; the deployment was undone."""


class NotDeployedError(WeirError):
    """An inference was sent to a pipeline that is not deployed."""

    def __init__(self, pipeline: str) -> None:
        super().__init__(f"pipeline {pipeline!r} is not deployed: call pipeline.deploy() first")


class InferenceError(WeirError):
    """A pipeline answered a request with an error."""


class InferenceTimeoutError(WeirError):
    """A pipeline did not answer within the request timeout."""


class AuthError(WeirError):
    """A request lacked a valid bearer token."""


class PayloadTooLarge(WeirError):
    """A request body is over the configured limit."""


class Overloaded(WeirError):
    """The gateway cannot take the request now; `retry_after_s`: about when it could."""

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class PolicyError(WeirError):
    """The server's settings forbid what was asked (e.g. Python steps, WEIR_ALLOW_PYTHON_STEPS)."""
