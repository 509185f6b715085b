"""control/sdk/config.py: DeploymentConfigBuilder refuses a bad value when it is set."""

from __future__ import annotations

import pytest

from control import ConfigError, DeploymentConfigBuilder


def test_good_values_build_a_config() -> None:
    config = DeploymentConfigBuilder().replica_count(2).cpus(0.5).memory("512Mi").gpus(0).build()
    assert (config.replicas, config.cpus, config.memory, config.gpus) == (2, 0.5, "512Mi", 0)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda b: b.memory("lots"),
            r"memory\('lots'\) is not valid: give a size as Kubernetes "
            r"writes it, e.g. '512Mi', '1Gi' or '2G'",
        ),
        (lambda b: b.replica_count(0), r"replica_count\(0\) is not valid: give a whole number"),
        (lambda b: b.cpus(-1), r"cpus\(-1\) is not valid: give a number of CPUs above 0"),
        (lambda b: b.gpus("two"), r"gpus\('two'\) is not valid"),
    ],
)
def test_a_bad_value_is_refused_with_what_to_give(call: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        call(DeploymentConfigBuilder())  # type: ignore[operator]


def test_answers_are_in_the_requests_format_unless_the_config_names_one() -> None:
    assert DeploymentConfigBuilder().build().result_format == "request"
    for result_format in ("arrow", "json", "request"):
        builder = DeploymentConfigBuilder().result_format(result_format)  # type: ignore[arg-type]
        assert builder.build().result_format == result_format
    with pytest.raises(
        ConfigError,
        match=r"result_format\('xml'\) is not valid: give 'request' "
        r"\(each answer in its request's format\), 'arrow' or "
        r"'json'",
    ):
        DeploymentConfigBuilder().result_format("xml")  # type: ignore[arg-type]
