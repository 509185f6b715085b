"""The server's bearer token and the owner-only files that hold secrets.

The token the server requires is the content of `WEIR_HOME/token`. The server
writes it from `WEIR_TOKEN` when it starts, and reads it again whenever the file
changes, so `weir token rotate` (a new file) takes effect from the next request
on without a restart: workers never see the token (they speak only to Kafka and
Redis), so they keep running. Files holding a secret (the token file, stack.json)
are readable by their owner only: written so from the first byte, and checked at
start (a file others may read is made owner-only; one owned by someone else is
refused).
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import secrets
import stat
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from control.errors import StackError
from control.settings import Settings

log = logging.getLogger(__name__)

TOKEN_FILE = "token"


def token_file(home: Path) -> Path:
    return home / TOKEN_FILE


def new_token() -> str:
    """A fresh random token (256 bits, URL-safe text)."""
    return secrets.token_urlsafe(32)


def write_private(path: Path, text: str) -> None:
    """Replace `path` with `text` atomically, readable and writable by the owner only."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)  # a leftover temp file keeps its old mode through O_CREAT
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def check_private(path: Path) -> None:
    """Make sure a file holding a secret is the owner's alone: fix its mode, or refuse it.

    :raises StackError: the file is a symlink or belongs to another user.
    """
    try:
        info = path.lstat()
    except FileNotFoundError:
        return
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISREG(info.st_mode):
        raise StackError(
            f"{path} holds a secret but is not a plain file: remove it and run `weir up` again"
        )
    if info.st_uid != os.getuid():
        raise StackError(
            f"{path} holds a secret but belongs to user id {info.st_uid}, not to "
            f"this user ({os.getuid()}): remove it, or run weir as its owner"
        )
    if info.st_mode & 0o077:
        os.chmod(path, 0o600)
        log.warning(
            "%s was readable by others (mode %o): made it owner-only (600); if anyone "
            "else could read it, run `weir token rotate`",
            path,
            info.st_mode & 0o777,
        )


class Token:
    """The bearer token the server checks requests against, re-read when its file changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: tuple[int, int, int] | None = None
        self._expected = b""

    @classmethod
    def install(cls, home: Path, token: str) -> Token:
        """Write `token` as the one the server requires (at server start)."""
        path = token_file(home)
        home.mkdir(parents=True, exist_ok=True)
        check_private(path)
        write_private(path, token)
        return cls(path)

    def matches(self, offered: str) -> bool:
        """Whether `offered` is the current token, compared in constant time."""
        expected = self._current()
        return bool(expected) and hmac.compare_digest(offered.encode("utf-8", "replace"), expected)

    def _current(self) -> bytes:
        try:
            info = self.path.stat()
        except FileNotFoundError:
            return b""  # no token file: nobody gets in
        seen = (info.st_ino, info.st_mtime_ns, info.st_size)
        if seen != self._seen:
            check_private(self.path)
            self._expected = self.path.read_text().strip().encode()
            self._seen = seen
        return self._expected


def rotate(settings: Settings) -> str:
    """Issue a new token: the running server requires it from its next request on and refuses
    the old one; stack.json gets it too, so `Client()` and the CLI find it."""
    token = new_token()
    path = token_file(settings.home)
    if not path.exists():
        raise StackError(f"no token file at {path}: start the server (`weir up`) first")
    check_private(path)
    write_private(path, token)
    if settings.stack_file.exists():
        check_private(settings.stack_file)
        stack = json.loads(settings.stack_file.read_text())
        write_private(settings.stack_file, json.dumps({**stack, "token": token}, indent=2))
    return token


def redact_url(url: str) -> str:
    """`url` without its password, for logs and the console (redis://:***@host:6379/0)."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
