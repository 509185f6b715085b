"""The naming rule for workspaces, pipelines and models (DNS labels)."""

from __future__ import annotations

import re

from control.errors import InvalidNameError

_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def check_name(name: str, kind: str = "name") -> str:
    """Return `name` if it is a DNS label, else raise InvalidNameError quoting it and the rule."""
    if not isinstance(name, str) or not _DNS_LABEL.match(name):
        raise InvalidNameError(str(name), kind)
    return name
