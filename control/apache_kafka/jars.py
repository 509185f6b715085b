"""The embedded Apache Kafka broker's jars: fetched once with Maven into weir's cache.

`pom.xml` beside this module names the broker (`org.apache.kafka:kafka_2.13`)
and the log binding; `mvn dependency:copy-dependencies` copies them with
everything they need into `<cache>/kafka-<version>/libs`. Maven keeps its own
copy in `~/.m2` too, so a second cache directory costs no download.

Example:
    libs = kafka_jars(Path("~/.cache/weir").expanduser(), say=print)
    subprocess.run(["java", "-cp", f"{libs}/*", "kafka.Kafka", "server.properties"])
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from control.errors import StackError

HERE = Path(__file__).parent
POM = HERE / "pom.xml"
COMPLETE = ".complete"
"""Written into the libs folder once every jar is there (a cut-short fetch is redone)."""


def kafka_version() -> str:
    """The Apache Kafka version the pom names."""
    found = re.search(r"<kafka.version>([^<]+)</kafka.version>", POM.read_text())
    assert found, f"{POM} names no kafka.version"
    return found.group(1)


def require_tool(name: str, package: str) -> str:
    """The path of `name` on PATH, or a StackError that says what to install."""
    found = shutil.which(name)
    if not found:
        raise StackError(
            f"the embedded Apache Kafka broker needs `{name}`, which is not on PATH: install "
            f"{package} (e.g. `apt-get install {package}`), or use the embedded Tansu broker "
            "(`weir up` without --broker kafka, or WEIR_BROKER=tansu)"
        )
    return found


def kafka_jars(cache: Path, *, say: Callable[[str], None] = print) -> Path:
    """The folder of the broker's jars, fetched with Maven the first time (with progress)."""
    libs = cache / f"kafka-{kafka_version()}" / "libs"
    if (libs / COMPLETE).exists():
        return libs
    require_tool("java", "openjdk-17-jre-headless")
    mvn = require_tool("mvn", "maven")
    if libs.exists():
        shutil.rmtree(libs)
    libs.mkdir(parents=True)
    say(f"fetching Apache Kafka {kafka_version()} with Maven into {libs} (once) ...")
    started = time.monotonic()
    proc = subprocess.Popen(
        [
            mvn,
            "-B",
            "-f",
            str(POM),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={libs}",
            "-Dmdep.useRepositoryLayout=false",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=cache,
    )
    assert proc.stdout is not None
    tail: list[str] = []
    downloaded = 0
    for line in proc.stdout:
        tail = (tail + [line.rstrip()])[-30:]
        if line.startswith("Downloaded from"):
            downloaded += 1
            if downloaded % 25 == 0:
                say(f"  {downloaded} files downloaded ...")
    if proc.wait() != 0:
        shutil.rmtree(libs, ignore_errors=True)
        raise StackError(
            "Maven could not fetch the Apache Kafka broker (is Maven Central "
            "reachable?); its last lines:\n" + "\n".join(tail)
        )
    jars = sum(1 for _ in libs.glob("*.jar"))
    (libs / COMPLETE).write_text(f"{jars} jars\n")
    say(f"  {jars} jars ready in {time.monotonic() - started:.0f}s")
    return libs
