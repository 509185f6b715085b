"""control/names.py: DNS-label names for pipelines, models and workspaces."""

from __future__ import annotations

import pytest

from control.errors import InvalidNameError
from control.names import check_name


@pytest.mark.parametrize("name", ["a", "imdb-pipeline", "p1", "0abc", "a" * 63])
def test_valid_names_pass(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "my.pipeline",
        "my_pipeline",
        "MyPipeline",
        "trailing-",
        "-leading",
        "a" * 64,
        "spa ce",
        "ünïcode",
    ],
)
def test_invalid_names_quote_the_name_and_the_rule(name: str) -> None:
    with pytest.raises(InvalidNameError) as raised:
        check_name(name, "pipeline name")
    assert repr(name) in str(raised.value)
    assert "lowercase ASCII letters, digits and '-'" in str(raised.value)
