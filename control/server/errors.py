"""The one table from error classes to HTTP status codes, and back."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import JSONResponse

from control import errors as ce
from engine import errors as ee
from streams import errors as se

STATUS: dict[type[ee.WeirError], int] = {
    ce.InvalidNameError: 400,
    ee.CodecError: 400,
    ee.InputMismatch: 400,
    ee.ExpressionError: 400,
    ee.UnknownRuntime: 400,
    ee.ModelLoadError: 400,
    ee.SplitError: 400,
    ce.AuthError: 401,
    ce.EntityNotFoundError: 404,
    ce.NotDeployedError: 409,
    ce.LimitError: 409,
    ce.DeploymentError: 409,
    ce.PayloadTooLarge: 413,
    ce.InferenceError: 422,
    ee.StepFailed: 422,
    ce.Overloaded: 503,
    ce.InferenceTimeoutError: 504,
    ce.WaitForDeployError: 504,
    ce.StackError: 503,
    se.KafkaUnreachable: 503,
}

# For the SDK: the class a server's error body names.
BY_NAME: dict[str, type[ee.WeirError]] = {cls.__name__: cls for cls in STATUS}


def status_for(exc: ee.WeirError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]  # type: ignore[index]
    return 500


async def weir_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ee.WeirError)
    status = status_for(exc)
    headers = {"Retry-After": "1"} if status == 503 else None
    return JSONResponse({"error": type(exc).__name__, "message": str(exc)}, status_code=status,
                        headers=headers)
