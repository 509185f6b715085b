"""No module of weir reaches into another object's private attributes (`other._name`), and
aiokafka's internals are reached in one package only: streams/aiokafka_internals, whose
reach-ins `check_aiokafka` verifies against the installed aiokafka."""

from __future__ import annotations

import ast
from pathlib import Path

from streams.aiokafka_internals import check_aiokafka

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("engine", "streams", "control")
INTERNALS = ROOT / "streams" / "aiokafka_internals"
CONVENTIONS = {"os._exit", "parts._replace"}
"""Private by name only: os._exit, and namedtuple's public _replace."""


def reach_ins(source: str) -> list[str]:
    """Each `x._name` in `source` whose `x` is not self or cls, as 'line: x._name'."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
            and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
            and ast.unparse(node) not in CONVENTIONS
        ):
            found.append(f"{node.lineno}: {ast.unparse(node)}")
    return found


def test_the_scan_finds_a_reach_in() -> None:
    assert reach_ins("consumer._fetcher._fetch_task = None\nself._ok = 1\n") == [
        "1: consumer._fetcher._fetch_task",
        "1: consumer._fetcher",
    ]


def test_no_module_reaches_into_private_attributes() -> None:
    found = {
        str(path.relative_to(ROOT)): hits
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        if INTERNALS not in path.parents and (hits := reach_ins(path.read_text()))
    }
    assert not found, (
        "reach-ins to private attributes (give the owner a public method, or, for aiokafka, "
        f"add it to streams/aiokafka_internals and its check_aiokafka): {found}"
    )


def test_the_installed_aiokafka_has_what_weir_reaches_into() -> None:
    check_aiokafka()
