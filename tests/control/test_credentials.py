"""control/credentials.py: the token file, owner-only secret files, rotation, redaction."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from control.credentials import (
    Token,
    check_private,
    redact_url,
    rotate,
    token_file,
    write_private,
)
from control.errors import StackError
from control.settings import Settings


def test_written_files_are_owner_only_from_the_first_byte(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    old = os.umask(0)
    try:
        write_private(path, "s3cret")
    finally:
        os.umask(old)
    assert path.read_text() == "s3cret"
    assert path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["secret"]  # no temp file left


def test_a_file_others_may_read_is_made_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "stack.json"
    path.write_text("{}")
    path.chmod(0o644)
    check_private(path)
    assert path.stat().st_mode & 0o777 == 0o600


def test_a_symlink_is_refused(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").write_text("x")
    (tmp_path / "token").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(StackError, match="not a plain file"):
        check_private(tmp_path / "token")


def test_a_missing_file_is_fine(tmp_path: Path) -> None:
    check_private(tmp_path / "absent")


def test_the_token_matches_only_itself_and_follows_its_file(tmp_path: Path) -> None:
    token = Token.install(tmp_path, "first")
    assert token.matches("first")
    assert not token.matches("firs") and not token.matches("") and not token.matches("\u00e9")
    write_private(token_file(tmp_path), "second")
    assert token.matches("second") and not token.matches("first")
    token_file(tmp_path).unlink()
    assert not token.matches("second")  # no token file: nobody gets in


def test_an_empty_token_lets_nobody_in(tmp_path: Path) -> None:
    assert not Token.install(tmp_path, "").matches("")


def test_rotate_replaces_the_token_file_and_the_stack_files_token(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    Token.install(tmp_path, "old")
    write_private(settings.stack_file, json.dumps({"token": "old", "server_url": "http://x"}))
    new = rotate(settings)
    assert new != "old" and len(new) >= 40
    assert token_file(tmp_path).read_text() == new
    stack = json.loads(settings.stack_file.read_text())
    assert stack == {"token": new, "server_url": "http://x"}
    assert settings.stack_file.stat().st_mode & 0o077 == 0


def test_rotate_without_a_server_says_to_start_one(tmp_path: Path) -> None:
    with pytest.raises(StackError, match="weir up"):
        rotate(Settings(home=tmp_path))


@pytest.mark.parametrize(
    "url, shown",
    [
        ("redis://:hunter2@db:6379/0", "redis://:***@db:6379/0"),
        ("redis://user:hunter2@db:6379/0", "redis://user:***@db:6379/0"),
        ("redis://db:6379/0", "redis://db:6379/0"),
    ],
)
def test_redact_url_hides_the_password(url: str, shown: str) -> None:
    assert redact_url(url) == shown
