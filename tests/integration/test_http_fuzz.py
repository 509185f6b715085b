"""The HTTP API under generated requests (schemathesis, from the server's own OpenAPI document).

Every operation is called with requests that fit its schema and requests that do not,
with the token, with a wrong one and with none, on a server of this module's own
(`_own_server`). No answer may be a 500; every 4xx says in a JSON `message` what was
wrong; every route but the health checks refuses a caller without the token; the
server keeps answering and writes nothing outside WEIR_HOME. Seeded (derandomized),
bounded by example counts.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pandas as pd
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import APIOperation, Case, GenerationMode

from control.embedded import Service
from control.sdk.client import Client
from control.server.auth import OPEN_PATHS
from tests.integration._own_server import OwnServer, own_server

pytestmark = pytest.mark.slow

PAYLOAD_LIMIT = 64 * 1024
UPLOAD_LIMIT = 1024 * 1024
EXAMPLES = 15
"""Generated requests per operation and mode (and name choice), with the token."""
REFUSED_EXAMPLES = 3
"""Generated requests per operation and mode, each sent with every missing or wrong token."""
PIPELINE, MODEL = "fz", "diabetes"
NEVER_FIXED = ("/deploy", "/undeploy")
"""Operations never pointed at the seeded pipeline (a generated config could start 64 workers
or stop it); they are still called with generated names."""

CASES: Counter[str] = Counter()


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory,
    kafka_service: Service,
    redis_service: Service,
    diabetes_onnx: Path,
) -> Iterator[OwnServer]:
    root = tmp_path_factory.mktemp("http-fuzz")
    with own_server(
        root,
        kafka_service,
        redis_service,
        9,
        max_payload_bytes=PAYLOAD_LIMIT,
        max_upload_bytes=UPLOAD_LIMIT,
    ) as own:
        client = Client(server_url=own.url, token=own.token())
        model = client.upload_model(MODEL, diabetes_onnx).configure("onnx")
        client.build_pipeline(PIPELINE).add_model_step(model).deploy(quiet=True)
        yield own
        print(f"\nHTTP fuzz cases: {dict(CASES)}")


@pytest.fixture(scope="module")
def operations(server: OwnServer) -> list[APIOperation]:
    document = server.request("GET", "/openapi.json").json()
    return [result.ok() for result in schemathesis.openapi.from_dict(document).get_all_operations()]


def _fixed_names(operation: APIOperation) -> dict[str, Any] | None:
    """Path parameters that point the operation at the seeded pipeline or model."""
    if "name" not in operation.path_parameters or operation.path.endswith(NEVER_FIXED):
        return None
    return {"name": MODEL if operation.path.startswith("/models/") else PIPELINE}


def _run(
    operation: APIOperation, mode: GenerationMode, examples: int, check: Any, **fixed: Any
) -> None:
    """Call `check(case)` on up to `examples` generated cases (none if the mode can make none)."""
    try:
        strategy = operation.as_strategy(generation_mode=mode, **fixed)
    except Unsatisfiable:
        return

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate],
    )
    @given(case=strategy)
    def each(case: Case) -> None:
        check(case)

    try:
        each()
    except Unsatisfiable:  # e.g. no negative case exists for an operation without parameters
        pass


def _says_what_was_wrong(response: Any) -> bool:
    try:
        body = response.json()
    except ValueError:
        return False
    if not isinstance(body, dict) or not isinstance(body.get("error"), str):
        return False
    path = urlsplit(str(response.request.url)).path
    if path == "/v2" or path.startswith("/v2/"):  # the Open Inference Protocol's shape:
        return bool(body["error"])  # {"error": "what was wrong"}
    return isinstance(body.get("message"), str) and bool(body["message"])


def test_generated_requests_get_no_500_and_every_4xx_says_what_was_wrong(
    server: OwnServer, operations: list[APIOperation]
) -> None:
    failures: list[str] = []

    def check(case: Case) -> None:
        response = case.call(base_url=server.url, headers=server.headers(), timeout=60)
        CASES["with token"] += 1
        status = response.status_code
        if (
            status >= 500
            and status not in (503, 504)
            or (status >= 400 and not _says_what_was_wrong(response))
        ):
            failures.append(
                f"{case.operation.label} -> {status} {response.text[:300]!r}; "
                f"path {case.path_parameters} query {case.query} "
                f"body {str(case.body)[:200]!r}"
            )

    for operation in operations:
        fixed = _fixed_names(operation)
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            if fixed is None:
                _run(operation, mode, EXAMPLES, check)
            else:  # mostly at the seeded pipeline or model, where the route does its work
                query = {"workspace": "default"} if "workspace" in operation.query else None
                _run(operation, mode, EXAMPLES, check, path_parameters=fixed, query=query)
                _run(operation, mode, EXAMPLES // 3, check)
    assert not failures, f"{len(failures)} bad answers:\n" + "\n".join(failures[:20])
    assert CASES["with token"] >= 30 * EXAMPLES  # the generation reached every operation
    assert not server.server_errors()


REFUSED = [None, "Bearer wrong", "Bearer \u00e9t\u00e9", "Basic d2Vpcjp3ZWly", "bearer", "Bearer  "]
"""Authorization headers that must not get in: none, wrong, non-ASCII, another scheme, ..."""


def test_every_route_but_the_health_checks_refuses_a_missing_or_wrong_token(
    server: OwnServer, operations: list[APIOperation]
) -> None:
    failures: list[str] = []

    def check(case: Case) -> None:
        for authorization in REFUSED:
            headers = {"Authorization": authorization} if authorization else {}
            response = case.call(base_url=server.url, headers=headers, timeout=60)
            CASES["without token"] += 1
            if case.operation.path in OPEN_PATHS:
                if response.status_code != 200:
                    failures.append(f"{case.operation.label} -> {response.status_code}")
            elif (
                response.status_code != 401
                or not _says_what_was_wrong(response)
                or "bearer token" not in response.text
            ):
                failures.append(
                    f"{case.operation.label} with {authorization!r} -> "
                    f"{response.status_code} {response.text[:200]!r}"
                )

    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _run(operation, mode, REFUSED_EXAMPLES, check)
    unknown = server.request("GET", "/no/such/route", headers={"Authorization": "Bearer x"})
    assert unknown.status_code == 401  # refused before routing: a caller learns nothing
    assert not failures, "\n".join(failures[:20])


def _raw(server: OwnServer, head: str, body: bytes = b"") -> tuple[int, dict[str, Any]]:
    """Send a request by hand (head lines, then `body` as given) and read the answer,
    without sending the rest of a body the head announces."""
    address = urlsplit(server.url)
    with socket.create_connection((address.hostname, address.port), timeout=60) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode() + body)
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    body_text = rest.partition(b"\r\n\r\n")[2]
    return int(status_line.split()[1]), json.loads(body_text)


def _head(server: OwnServer, path: str, *lines: str) -> str:
    return (
        "\n".join(
            [
                f"POST {path} HTTP/1.1",
                f"Host: {urlsplit(server.url).netloc}",
                f"Authorization: Bearer {server.token()}",
                *lines,
                "",
            ]
        )
        + "\n"
    )


def test_a_declared_body_over_the_limit_is_refused_before_it_is_sent(server: OwnServer) -> None:
    head = _head(
        server,
        f"/pipelines/{PIPELINE}",
        "Content-Type: application/json",
        f"Content-Length: {10**10}",
    )
    status, body = _raw(server, head)  # not one byte of the 10 GB body is sent
    assert status == 413
    assert body["error"] == "PayloadTooLarge" and "WEIR_MAX_PAYLOAD_BYTES" in body["message"]


@pytest.mark.parametrize("path", [f"/pipelines/{PIPELINE}", f"/v2/models/{PIPELINE}/infer"])
def test_a_chunked_body_is_refused_at_the_chunk_that_crosses_the_limit(
    server: OwnServer, path: str
) -> None:
    head = _head(server, path, "Content-Type: application/json", "Transfer-Encoding: chunked")
    chunk = b"[" + b" " * PAYLOAD_LIMIT
    # The body never ends (no last chunk): a server that read it whole would never answer.
    status, body = _raw(server, head, b"%x\r\n%s\r\n" % (len(chunk), chunk))
    assert status == 413
    assert body["error"] == "PayloadTooLarge" and "WEIR_MAX_PAYLOAD_BYTES" in body["message"]


def test_uploads_have_their_own_limit(server: OwnServer) -> None:
    between = b"\x00" * (2 * PAYLOAD_LIMIT)  # over the payload limit, under the upload limit
    upload = server.request("POST", "/models/big", params={"filename": "big.onnx"}, content=between)
    assert upload.status_code == 400 and upload.json()["error"] == "ModelLoadError"
    inference = server.request(
        "POST",
        f"/pipelines/{PIPELINE}",
        content=between,
        headers={"Content-Type": "application/json"},
    )
    assert inference.status_code == 413
    over = server.request(
        "POST", "/models/big", params={"filename": "big.onnx"}, content=b"\x00" * (UPLOAD_LIMIT + 1)
    )
    assert over.status_code == 413 and "WEIR_MAX_UPLOAD_BYTES" in over.json()["message"]
    assert "big" not in {m["name"] for m in server.request("GET", "/models").json()}


def test_the_server_keeps_answering_and_wrote_nothing_outside_its_home(server: OwnServer) -> None:
    assert server.request("GET", "/healthz").status_code == 200
    assert server.request("GET", "/pipelines").status_code == 200
    client = Client(server_url=server.url, token=server.token())
    result = client.get_pipeline(PIPELINE).infer(pd.DataFrame({"tensor": [[0.1] * 10]}))
    assert len(result) == 1
    assert not server.written_outside()
    assert not server.server_errors()


def test_token_rotation_takes_effect_at_once_and_workers_keep_running(server: OwnServer) -> None:
    pipeline = Client(server_url=server.url, token=server.token()).get_pipeline(PIPELINE)
    pids = [engine["pid"] for engine in pipeline.status()["engines"]]
    old = server.token()
    rotated = subprocess.run(
        [sys.executable, "-m", "control.cli", "token", "rotate"],
        env={**_env(), "WEIR_HOME": str(server.home)},
        text=True,
        capture_output=True,
        timeout=60,
    )
    assert rotated.returncode == 0, rotated.stderr
    new = server.token()
    assert new != old and new not in rotated.stdout + rotated.stderr
    assert server.request("GET", "/pipelines").status_code == 200  # with the new token
    refused = server.request("GET", "/pipelines", headers={"Authorization": f"Bearer {old}"})
    assert refused.status_code == 401
    for path in (server.settings.stack_file, server.home / "token"):
        assert path.stat().st_mode & 0o077 == 0, path
    pipeline = Client(server_url=server.url, token=new).get_pipeline(PIPELINE)
    assert [engine["pid"] for engine in pipeline.status()["engines"]] == pids
    assert len(pipeline.infer(pd.DataFrame({"tensor": [[0.2] * 10]}))) == 1
    secrets = (old, new)
    status = json.dumps(pipeline.status())
    logs = [p.read_text(errors="replace") for p in (server.home / "run").rglob("*.log")]
    assert not any(secret in text for secret in secrets for text in [status, *logs])


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("WEIR_")}
