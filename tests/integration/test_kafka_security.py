"""weir on an Apache Kafka that asks for TLS and SCRAM credentials, as managed Kafka does.

The embedded broker gets a SASL_SSL listener with a certificate from a CA the test makes,
and SCRAM users. A stack pointed at that listener (WEIR_KAFKA_SECURITY_PROTOCOL and
friends, read by every Kafka client weir creates) deploys a pipeline and answers over
HTTP and Kafka; wrong credentials fail `weir up` at once with what to check.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from control.apache_kafka.broker import SecureListener, start_kafka
from control.embedded import Service
from control.errors import StackError
from control.settings import Settings
from control.stack import up
from tests.integration._servers import own_server
from tests.integration._tls import Certificates, make_certificates

pytestmark = pytest.mark.slow

USER, PASSWORD = "weir-app", "s3cret-for-tests"


@pytest.fixture(scope="module")
def secure_kafka(
    broker: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[SecureListener, Certificates, Service]]:
    if broker != "kafka":
        pytest.skip("SASL_SSL listeners: the Apache Kafka leg")
    folder = tmp_path_factory.mktemp("secure-kafka")
    certs = make_certificates(folder)
    listener = SecureListener(keystore=certs.keystore, users={USER: PASSWORD})
    service = start_kafka(
        folder / "data", folder, Settings().cache, secure=listener, say=lambda _: None
    )
    yield listener, certs, service
    service.stop()


def _env(listener: SecureListener, certs: Certificates, password: str) -> dict[str, str]:
    return {
        "WEIR_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "WEIR_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "WEIR_KAFKA_SASL_USERNAME": USER,
        "WEIR_KAFKA_SASL_PASSWORD": password,
        "WEIR_KAFKA_SSL_CAFILE": str(certs.ca),
    }


def test_a_stack_on_sasl_ssl_deploys_and_answers(
    secure_kafka: tuple[SecureListener, Certificates, Service], diabetes_onnx: Path, tmp_path: Path
) -> None:
    listener, certs, _ = secure_kafka
    stack = {"kafka_bootstrap": f"127.0.0.1:{listener.port}"}
    with own_server(stack, tmp_path / "home", _env(listener, certs, PASSWORD)) as (record, client):
        model = client.upload_model("secure-diabetes", diabetes_onnx).configure("onnx")
        pipeline = client.build_pipeline("secure").add_model_step(model)
        pipeline.deploy(quiet=True)
        try:
            x = np.random.default_rng(0).random((3, 10), dtype=np.float32)
            answer = pipeline.infer(pd.DataFrame({"tensor": [row.tolist() for row in x]}))
            assert len(answer) == 3 and answer["out.variable"].notna().all()
            assert pipeline.status()["status"] == "Running"
        finally:
            pipeline.undeploy()


def test_wrong_credentials_fail_weir_up_at_once_saying_what_to_check(
    secure_kafka: tuple[SecureListener, Certificates, Service],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    listener, certs, _ = secure_kafka
    for name, value in _env(listener, certs, "not-the-password").items():
        monkeypatch.setenv(name, value)
    settings = Settings(home=tmp_path / "home", kafka_bootstrap=f"127.0.0.1:{listener.port}")
    with pytest.raises(StackError) as refused:
        up(settings, detach=True, say=lambda _: None)
    message = str(refused.value)
    assert f"127.0.0.1:{listener.port}" in message and "SCRAM-SHA-512" in message
    assert "WEIR_KAFKA_SASL_" in message
    assert not (tmp_path / "home" / "stack.json").exists()  # nothing was left running
