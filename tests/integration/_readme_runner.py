"""Runs README.md's examples in order, as a user would paste them: Python blocks in one
namespace (a later block uses names an earlier one made), shell blocks in bash with -e and
pipefail. Blocks marked not to run are only checked for syntax. Started by test_readme.py
with the blocks as JSON; prints each block before its output and stops at the first failure
(exit status 1)."""

from __future__ import annotations

import json
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any


def run(block: dict[str, Any], namespace: dict[str, Any]) -> bool:
    where = f"README.md line {block['line']}"
    if block["language"] == "python":
        code = compile(block["code"], where, "exec")
        if block["skip"] is None:
            exec(code, namespace)
        return True
    check = ["-n"] if block["skip"] is not None else []
    return (
        subprocess.run(
            ["bash", "-eo", "pipefail", *check, "-c", block["code"]], stderr=subprocess.STDOUT
        ).returncode
        == 0
    )


def main(blocks_file: str) -> int:
    namespace: dict[str, Any] = {"__name__": "__readme__"}
    for block in json.loads(Path(blocks_file).read_text()):
        how = "syntax only: " + block["skip"] if block["skip"] is not None else "run"
        print(
            f"\n=== README.md line {block['line']} ({block['language']}, {how}) ===\n"
            f"{block['code']}--- output ---",
            flush=True,
        )
        try:
            ok = run(block, namespace)
        except BaseException:
            traceback.print_exc(file=sys.stdout)
            ok = False
        sys.stdout.flush()
        if not ok:
            print(f"=== FAILED: the block at README.md line {block['line']} ===", flush=True)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
