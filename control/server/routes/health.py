"""Liveness and readiness: the only routes that need no token."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from control.errors import RegistryUnavailable
from control.server.state import get_state

router = APIRouter()


@router.get("/v2/health/live")
@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/v2/health/ready")
@router.get("/readyz")
def readyz(request: Request) -> JSONResponse:
    try:
        ok = get_state(request).registry.ping()
    except RegistryUnavailable:  # the process lives (/healthz), but what needs Redis fails
        return JSONResponse(
            {"status": "not ready", "reason": "Redis is unreachable"}, status_code=503
        )
    except Exception as exc:  # any other Redis failure means not ready too
        # Unauthenticated: name the failure, not the addresses inside its message.
        return JSONResponse(
            {"status": "not ready", "reason": f"Redis: {type(exc).__name__}"}, status_code=503
        )
    return JSONResponse({"status": "ready" if ok else "not ready"}, status_code=200 if ok else 503)
