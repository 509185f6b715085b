"""The server's error answers: a JSON body naming what was wrong, with the status it calls for.

weir's own errors get the status `control.error_status` lists; a request FastAPI
cannot parse (422) and an unknown route or method (404, 405) get the same body shape,
`{"error": ..., "message": ...}`, so every 4xx says what was wrong in `message`.
"""

from __future__ import annotations

import math
from typing import Any

from fastapi import Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from control.error_status import status_for
from engine.errors import WeirError

OIP_PREFIX = "/v2"


def error_response(exc: WeirError, path: str = "") -> JSONResponse:
    """`{"error": <class name>, "message": <what was wrong and how to fix it>}`; the Open
    Inference Protocol's routes answer `{"error": <message>}`, as its clients read it."""
    status = status_for(exc)
    headers = {"Retry-After": retry_after(exc)} if status == 503 else None
    body = (
        {"error": str(exc)}
        if path == OIP_PREFIX or path.startswith(OIP_PREFIX + "/")
        else {"error": type(exc).__name__, "message": str(exc)}
    )
    return JSONResponse(body, status_code=status, headers=headers)


def retry_after(exc: WeirError) -> str:
    """Whole seconds, at least 1: what the error says (an overloaded pipeline's drain
    time), else 1."""
    return str(max(1, math.ceil(getattr(exc, "retry_after_s", 1.0))))


async def weir_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, WeirError)
    return error_response(exc, request.url.path)


async def invalid_request_handler(request: Request, exc: Exception) -> JSONResponse:
    """A path, query, header or body FastAPI could not read: each problem, where it is."""
    assert isinstance(exc, RequestValidationError)
    problems = [_problem(error) for error in exc.errors()]
    return JSONResponse(
        {
            "error": "InvalidRequest",
            "message": "invalid request: " + "; ".join(problems),
            "detail": [
                {key: error.get(key) for key in ("loc", "msg", "type")}
                for error in jsonable_encoder(exc.errors())
            ],
        },
        status_code=422,
    )


async def http_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """Starlette's own refusals (unknown route, wrong method) in weir's body shape."""
    assert isinstance(exc, HTTPException)
    message = f"{request.method} {request.url.path}: {exc.detail}"
    if exc.status_code == 404:
        message += " (no such route: see /docs for the API)"
    return JSONResponse(
        {"error": "HTTPError", "message": message}, status_code=exc.status_code, headers=exc.headers
    )


def _problem(error: dict[str, Any]) -> str:
    where = ".".join(str(part) for part in error.get("loc", ()))
    return f"{where}: {error.get('msg', 'invalid')}"
