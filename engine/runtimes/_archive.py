"""A Python step uploaded as a `.zip`: its module(s), and the `requirements.txt` it needs.

The archive holds its files at the top, or inside one top-level folder (as zipping a
folder gives). Its entry module is the one top-level `.py` file that defines
`process_data` or `wallaroo_json`; it is found by reading the sources, not importing
them, since their imports may need packages only the step's own environment has.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from engine.errors import ModelLoadError
from engine.runtimes._step_module import ENTRY_POINTS, defined_entries

REQUIREMENTS = "requirements.txt"


@dataclass(frozen=True)
class StepArchive:
    """What an uploaded archive holds."""

    module: str
    """The entry module's name (its file without `.py`)."""
    requirements: str
    """Its requirements, comments and blank lines left out ('' if it has none)."""
    root: str
    """The folder inside the archive its files sit in ('' at the top)."""
    needs_pandas: bool = False
    """Its entry point is `wallaroo_json` (which takes a DataFrame) only."""


def is_archive(path: Path) -> bool:
    return zipfile.is_zipfile(path)


def read_archive(path: Path) -> StepArchive:
    """Check an archive and find its entry module and requirements.

    :raises ModelLoadError: it is not a usable step archive, saying why.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if not n.endswith("/")]
            _check_names(names)
            root = _root(names)
            top = {n[len(root) :]: n for n in names if "/" not in n[len(root) :]}
            entries = [
                (name[:-3], found)
                for name, member in sorted(top.items())
                if name.endswith(".py") and (found := defined_entries(_text(archive, member), name))
            ]
            requirements = (
                _requirements(_text(archive, top[REQUIREMENTS])) if REQUIREMENTS in top else ""
            )
    except (zipfile.BadZipFile, OSError) as exc:
        raise ModelLoadError(f"{path.name} is not a readable zip archive: {exc}") from exc
    except SyntaxError as exc:
        raise ModelLoadError(
            f"{exc.filename} in the archive is not valid Python: {exc.msg} (line {exc.lineno})"
        ) from exc
    if len(entries) != 1:
        which = (
            ", ".join(f"{m}.py ({', '.join(e)})" for m, e in entries)
            if entries
            else f"none of its top-level modules defines {' or '.join(ENTRY_POINTS)}"
        )
        raise ModelLoadError(
            f"a step archive needs exactly one top-level module defining process_data(input_data) "
            f"or wallaroo_json(data) (found: {which}); keep the entry point in one module and "
            "helpers in others"
        )
    module, defined = entries[0]
    return StepArchive(
        module=module,
        requirements=requirements,
        root=root,
        needs_pandas="process_data" not in defined,
    )


def unpack(path: Path, sha: str, root: Path) -> Path:
    """The archive's files, unpacked once under `root/steps/<sha>` (kept for later loads)."""
    step = read_archive(path)
    target = root / "steps" / sha[:32]
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".unpacking-"))
        try:
            with zipfile.ZipFile(path) as archive:
                archive.extractall(tmp)
            os.replace(tmp, target)  # another loader may have won: then its copy stays
        except OSError:
            if not target.exists():
                raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target / step.root


def _check_names(names: list[str]) -> None:
    for name in names:
        parts = PurePosixPath(name).parts
        if name.startswith("/") or ".." in parts or "\\" in name:
            raise ModelLoadError(
                f"the archive holds a file outside its folder ({name!r}); "
                "zip the step's folder with relative paths"
            )


def _root(names: list[str]) -> str:
    """'' if files sit at the top; 'folder/' if they all sit inside one folder."""
    tops = {name.split("/", 1)[0] for name in names}
    if len(tops) == 1 and all("/" in name for name in names):
        return tops.pop() + "/"
    return ""


def _text(archive: zipfile.ZipFile, member: str) -> str:
    try:
        return archive.read(member).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ModelLoadError(f"{member} in the archive is not UTF-8 text") from exc


def _requirements(text: str) -> str:
    """Requirement lines without comments and blanks: equal lists give one environment."""
    lines = (line.split(" #", 1)[0].strip() for line in text.splitlines())
    return "\n".join(line for line in lines if line and not line.startswith("#"))
