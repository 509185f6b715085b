"""The one list of weir's error classes, each with the HTTP status it is answered with.

The server answers an error with the status listed here and a JSON body naming the
class; the SDK turns that name back into the same class. A test walks every
`WeirError` subclass in engine, streams and control and fails if one is missing.
"""

from __future__ import annotations

from control import errors as ce
from engine import errors as ee
from streams import errors as se
from streams import log_schema as ls

STATUS: dict[type[ee.WeirError], int] = {
    ee.WeirError: 500,
    ce.InvalidNameError: 400,
    ce.ConfigError: 400,
    ee.CodecError: 400,
    ee.InputMismatch: 400,
    ee.ExpressionError: 400,
    ee.UnknownRuntime: 400,
    ee.ModelLoadError: 400,
    ee.SplitError: 400,
    ls.LogStoreError: 400,
    ls.LogSchemaError: 400,
    ls.LogQueryError: 400,
    ce.AuthError: 401,
    ce.PolicyError: 403,
    ce.EntityNotFoundError: 404,
    ce.NotDeployedError: 409,
    ce.LimitError: 409,
    ce.InUseError: 409,
    ce.DeploymentError: 409,
    ce.PayloadTooLarge: 413,
    se.RecordTooLarge: 413,
    se.InputTooLarge: 413,
    ce.InferenceError: 422,
    ee.StepFailed: 422,
    ce.Overloaded: 503,
    ce.StackError: 503,
    ce.RegistryUnavailable: 503,
    se.DeliveryFailed: 503,
    se.FetcherDied: 503,
    se.KafkaUnreachable: 503,
    ce.InferenceTimeoutError: 504,
    ce.WaitForDeployError: 504,
}

BY_NAME: dict[str, type[ee.WeirError]] = {cls.__name__: cls for cls in STATUS}
"""The class a server's error body names (the SDK raises it again)."""


def status_for(exc: ee.WeirError) -> int:
    """The HTTP status of `exc`: its own class's, else its nearest listed base's."""
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500
