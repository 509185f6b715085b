"""streams/topics.py: topic names, partitions and configs come from topics.yaml only."""

from __future__ import annotations

import pytest

from engine.definition import (
    ModelRef,
    ModelStep,
    PipelineSpec,
    RandomSplitStep,
    ShadowStep,
    SplitArm,
)
from streams.topics import TopicMap


@pytest.fixture(scope="module")
def topics() -> TopicMap:
    return TopicMap.load()


def test_stable_topics_do_not_depend_on_version(topics: TopicMap) -> None:
    assert topics.input("ws", "p").name == "ws.p.in"
    assert topics.output("ws", "p").name == "ws.p.out"
    assert topics.logs("ws", "p").name == "ws.p.logs"
    assert topics.dead_letter("ws", "p").name == "ws.p.dlq"


def test_boundary_topics_belong_to_one_deployment(topics: TopicMap) -> None:
    assert topics.boundary("ws", "p", "d1", 2).name == "ws.p.d1.s2"
    assert topics.deployment_of("ws.p.d1.s2") == ("ws", "p", "d1")
    assert topics.deployment_of("ws.p.d1.s2.shadow0") == ("ws", "p", "d1")
    assert topics.deployment_of("ws.p.out") is None


def test_partitions_and_configs_come_from_the_file(topics: TopicMap) -> None:
    assert topics.input("ws", "p").partitions == 4
    assert topics.dead_letter("ws", "p").partitions == 1
    assert topics.logs("ws", "p").config["retention.ms"] == "604800000"


def _ref(name: str) -> ModelRef:
    return ModelRef(name=name, version="1", sha="0" * 64, runtime="onnx")


def test_a_fused_chain_has_no_topics_between_its_steps(topics: TopicMap) -> None:
    spec = PipelineSpec(
        steps=[ModelStep(model=_ref("a")), ModelStep(model=_ref("b")), ModelStep(model=_ref("c"))]
    )
    names = [t.name for t in topics.deployment_topics("ws", "p", "d1", spec)]
    assert names == ["ws.p.in", "ws.p.out", "ws.p.logs", "ws.p.dlq"]


def test_sidekicks_cut_the_chain_and_shadows_get_a_topic_per_challenger(topics: TopicMap) -> None:
    split = RandomSplitStep(
        arms=[SplitArm(weight=1, models=[_ref("a")]), SplitArm(weight=2, models=[_ref("b")])]
    )
    shadow = ShadowStep(champion=_ref("a"), challengers=[_ref("b"), _ref("c")])
    spec = PipelineSpec(steps=[split, ModelStep(model=_ref("d")), shadow])
    names = [t.name for t in topics.internal_topics("ws", "p", "d1", spec, sidekicks={1})]
    assert names == ["ws.p.d1.s1", "ws.p.d1.s2", "ws.p.d1.s2.shadow0", "ws.p.d1.s2.shadow1"]
    assert topics.parse("challenger", "ws.p.d1.s2.shadow1") == {
        "workspace": "ws",
        "pipeline": "p",
        "deployment": "d1",
        "index": "2",
        "challenger": "1",
    }
    assert topics.parse("boundary", "ws.p.d1.s2.shadow1") is None
    last = [t.name for t in topics.internal_topics("ws", "p", "d1", spec, sidekicks={2})]
    assert last[0] == "ws.p.d1.s2"  # the last step's output is the result topic


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("default.houses.logs", {"workspace": "default", "pipeline": "houses"}),
        ("team-a.p-2.logs", {"workspace": "team-a", "pipeline": "p-2"}),
        ("default.houses.out", None),
        ("default.houses.d1.s1", None),
    ],
)
def test_parse_reverses_names(topics: TopicMap, name: str, expected: dict[str, str] | None) -> None:
    assert topics.parse("logs", name) == expected


def test_pattern_matches_only_its_role(topics: TopicMap) -> None:
    import re

    pattern = re.compile(topics.pattern("logs"))
    assert pattern.match("a.b.logs")
    assert not pattern.match("a.b.in")


def test_a_pattern_of_several_roles_matches_each_of_them(topics: TopicMap) -> None:
    import re

    pattern = re.compile(topics.pattern("output", "logs"))
    assert pattern.match("a.b.logs") and pattern.match("a.b.out")
    assert not pattern.match("a.b.in") and not pattern.match("a.b.logs.x")


def test_illegal_names_are_refused(topics: TopicMap) -> None:
    with pytest.raises(ValueError, match="not a legal Kafka topic name"):
        topics.input("ws", "bad/name")


def test_a_file_missing_a_role_is_refused() -> None:
    with pytest.raises(ValueError, match="lacks the roles"):
        TopicMap.from_dict({"topics": {"input": {"name": "{workspace}.{pipeline}.in"}}})
