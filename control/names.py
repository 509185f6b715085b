"""The naming rules: DNS labels for workspaces, pipelines and models; plain file names; versions."""

from __future__ import annotations

import re

from control.errors import InvalidNameError

_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_FILE_NAME_MAX = 255
FILE_NAME_RULE = (
    "a file name must be 1-255 bytes (UTF-8) with no '/', '\\\\' or control "
    "characters, and not '.' or '..'"
)
VERSION_RULE = (
    "a version is 1-128 ASCII letters, digits, '.', '_' or '-', starting with a letter or digit"
)


def check_name(name: str, kind: str = "name") -> str:
    """Return `name` if it is a DNS label, else raise InvalidNameError quoting it and the rule."""
    if not isinstance(name, str) or not _DNS_LABEL.match(name):
        raise InvalidNameError(str(name), kind)
    return name


def check_file_name(name: str) -> str:
    """Return `name` if it names a file and nothing else (no directory part, nothing hidden
    in control characters), else raise InvalidNameError."""
    if (
        not isinstance(name, str)
        or name in (".", "..")
        or not 0 < len(name.encode("utf-8", "surrogatepass")) <= _FILE_NAME_MAX
        or "/" in name
        or "\\" in name
        or any(_is_control(char) for char in name)
    ):
        raise InvalidNameError(str(name), "file name", FILE_NAME_RULE)
    return name


def _is_control(char: str) -> bool:
    return ord(char) < 32 or 127 <= ord(char) < 160


def check_version(version: str, kind: str = "version") -> str:
    """Return `version` if it is a plain version id (as weir makes them), else raise."""
    if not isinstance(version, str) or not _VERSION.match(version):
        raise InvalidNameError(str(version), kind, VERSION_RULE)
    return version
