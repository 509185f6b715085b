"""Debian's chromium for the console's browser test: installed with apt-get when missing.

Playwright's own browser download cannot be used (only package registries are reachable),
so the test drives /usr/bin/chromium through Playwright for Python.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


class ChromiumUnavailable(Exception):
    """Chromium is not installed and could not be."""


def _apt(*args: str) -> int:
    print(f"$ apt-get {' '.join(args)}", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(["apt-get", *args], env=env, check=False).returncode


def install_chromium() -> Path:
    """/usr/bin/chromium, installed first (`apt-get install -y chromium`, after an
    `apt-get update` if the package lists do not know it yet) when it is missing."""
    if CHROMIUM.exists():
        return CHROMIUM
    if shutil.which("apt-get") is None:
        raise ChromiumUnavailable("no /usr/bin/chromium and no apt-get to install it with")
    print("the console's browser test needs chromium; installing it", flush=True)
    code = _apt("install", "-y", "chromium")
    if code != 0:
        _apt("update")
        code = _apt("install", "-y", "chromium")
    if code != 0 or not CHROMIUM.exists():
        raise ChromiumUnavailable(
            f"`apt-get install -y chromium` failed (exit {code}): "
            "install it by hand (as root) to run this test"
        )
    return CHROMIUM


def chromium_or_skip(config: pytest.Config) -> Path:
    """The fixture's way in: apt-get's output shown as it runs; a skip if chromium cannot
    be had, except under CI=true, where that fails the test."""
    capture = config.pluginmanager.getplugin("capturemanager")
    try:
        with capture.global_and_fixture_disabled():
            return install_chromium()
    except ChromiumUnavailable as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI needs the browser test: {exc}")
        pytest.skip(str(exc))
