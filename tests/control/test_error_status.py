"""control/error_status.py: every weir error class has one HTTP status, and the SDK knows it."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import control
import engine
import streams
from control.error_status import BY_NAME, STATUS, status_for
from control.sdk._http import _error
from engine.errors import WeirError


def _all_weir_errors() -> list[type[WeirError]]:
    """Every WeirError subclass defined in engine, streams and control (each module imported)."""
    for package in (engine, streams, control):
        for module in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            importlib.import_module(module.name)
    found, todo = [], [WeirError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo += cls.__subclasses__()
    ours = ("engine", "streams", "control")
    return [cls for cls in found if cls.__module__.split(".")[0] in ours]


ERRORS = _all_weir_errors()


def test_the_walk_finds_the_known_errors() -> None:
    names = {cls.__name__ for cls in ERRORS}
    assert {"CodecError", "LogQueryError", "RecordTooLarge", "AuthError", "PolicyError"} <= names


@pytest.mark.parametrize("cls", ERRORS, ids=lambda cls: cls.__name__)
def test_every_error_class_is_listed_with_its_own_status(cls: type[WeirError]) -> None:
    assert cls in STATUS, f"{cls.__module__}.{cls.__name__} is missing from control/error_status.py"
    assert 400 <= STATUS[cls] <= 599


@pytest.mark.parametrize("cls", ERRORS, ids=lambda cls: cls.__name__)
def test_the_sdk_raises_the_class_the_server_names(cls: type[WeirError]) -> None:
    raised = _error(STATUS[cls], {"error": cls.__name__, "message": "what was wrong"})
    assert type(raised) is cls
    assert str(raised) == "what was wrong"


def test_an_overloaded_answer_tells_the_sdk_user_when_to_retry() -> None:
    body = {"error": "Overloaded", "message": "retry in ~15s"}
    assert getattr(_error(503, body, "15"), "retry_after_s", None) == 15.0
    assert getattr(_error(503, body, None), "retry_after_s", None) == 1.0  # a proxy's 503


def test_names_are_unique() -> None:
    assert len(BY_NAME) == len(STATUS)


def test_a_subclass_nobody_listed_takes_its_base_status() -> None:
    from streams.log_schema import LogQueryError

    class Narrower(LogQueryError):
        pass

    assert status_for(Narrower("x")) == 400
    assert status_for(LogQueryError("malformed cursor")) == 400
