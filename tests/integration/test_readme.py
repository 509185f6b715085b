"""README.md's examples run as written, so the README cannot drift from the code.

Every fenced ```python, ```bash, ```sh and ```console block runs, in order, against the
session's embedded stack: Python blocks share one namespace, shell blocks run in bash (a
```console block's `$ ` lines are its commands). They run as a user's would: in a fresh
directory holding `.venv` (this environment), with HOME such that `~/.weir` is the stack's
home, so `Client()`, `weir` and `~/.weir/stack.json` find it.

A block that must not run here says why in an HTML comment on the line before it (blank
lines between are allowed), which readers of the rendered README do not see:

    <!-- not tested: stops the stack the other tests share -->

Such blocks are still checked for syntax (`compile`, `bash -n`). A failure prints every
block up to the failing one with its output.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from control.sdk.client import Client
from engine.errors import WeirError

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
RUNNER = Path(__file__).with_name("_readme_runner.py")
LANGUAGES = {"python": "python", "bash": "shell", "sh": "shell", "console": "shell"}
# The pipeline the README builds; removed afterwards so later tests start without it.
README_PIPELINE = "diabetes"

_FENCE = re.compile(r"^```(?P<language>\S*)\n(?P<code>.*?)^```$", re.MULTILINE | re.DOTALL)
_SKIP = re.compile(r"<!--\s*not tested:\s*(?P<why>.*?)\s*-->", re.DOTALL)


class Block(NamedTuple):
    line: int
    language: str
    code: str
    skip: str | None


def readme_blocks(text: str) -> list[Block]:
    """The fenced blocks in order; ValueError for a language that is neither run nor
    marked, or a `not tested` mark without a reason."""
    blocks = []
    for fence in _FENCE.finditer(text):
        line = text.count("\n", 0, fence.start()) + 1
        before = text[: fence.start()].rstrip()
        marked = _SKIP.fullmatch(before[before.rfind("<!--") :]) if before.endswith("-->") else None
        skip = marked["why"] if marked else None
        if skip == "":
            raise ValueError(f"README.md line {line}: say why the block is not tested")
        language = LANGUAGES.get(fence["language"])
        if language is None:
            raise ValueError(
                f"README.md line {line}: a ```{fence['language']} block is not "
                f"run; use one of {sorted(LANGUAGES)} or mark it not tested"
            )
        code = fence["code"]
        if fence["language"] == "console":
            code = "".join(f"{row[2:]}\n" for row in code.splitlines() if row.startswith("$ "))
        blocks.append(Block(line, language, code, skip))
    return blocks


def test_blocks_are_read_with_their_marks() -> None:
    text = (
        "# t\n\n<!-- not tested: installs -->\n```bash\npip install x\n```\n\n"
        "```python\nx = 1\n```\n<!-- a note -->\n```console\n$ weir up\nok\n```\n"
    )
    assert readme_blocks(text) == [
        Block(4, "shell", "pip install x\n", "installs"),
        Block(8, "python", "x = 1\n", None),
        Block(12, "shell", "weir up\n", None),
    ]
    with pytest.raises(ValueError, match="line 1: a ```yaml block is not run"):
        readme_blocks("```yaml\na: 1\n```\n")


def test_readme_examples_run(
    stack: dict[str, Any], stack_home: Path, client: Client, tmp_path: Path
) -> None:
    blocks = readme_blocks((ROOT / "README.md").read_text())
    assert any(b.skip is None and b.language == "python" for b in blocks)
    assert any(b.skip is None and b.language == "shell" for b in blocks)
    home = tmp_path / "home"
    home.mkdir()
    (home / ".weir").symlink_to(stack_home)
    work = tmp_path / "work"
    work.mkdir()
    (work / ".venv").symlink_to(sys.prefix)
    (tmp_path / "blocks.json").write_text(json.dumps([b._asdict() for b in blocks]))
    env = {key: value for key, value in os.environ.items() if not key.startswith("WEIR_")}
    env.update(HOME=str(home), PATH=f"{Path(sys.prefix) / 'bin'}:{env['PATH']}", COLUMNS="100")
    output = tmp_path / "output.txt"
    try:
        with output.open("w") as out:
            done = subprocess.run(
                [sys.executable, str(RUNNER), str(tmp_path / "blocks.json")],
                cwd=work,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=240,
            )
    except subprocess.TimeoutExpired:
        pytest.fail(f"README examples still running after 240 s:\n{output.read_text()}")
    finally:
        _remove_pipeline(client)
    assert done.returncode == 0, f"a README example failed:\n{output.read_text()}"


def _remove_pipeline(client: Client) -> None:
    try:
        pipeline = client.get_pipeline(README_PIPELINE)
    except WeirError:
        return  # never built: the README failed before
    pipeline.undeploy()
    pipeline.delete()
