"""The policy pack's small judgements, one by one: label selectors, peers that admit everything,
base64 ConfigMap data, dependencies.

The rule tests run whole resources through the pack; these pin the helpers' edges that `make
mutation` found no rule test telling apart (an empty selector against one with expressions, a
`NotIn` on an absent label, base64 with junk characters).
"""

from __future__ import annotations

import base64
from types import SimpleNamespace

import pytest

from smartnation_policy.rules import _decoded, _depends_on, _peer_is_everything, _selects_everything
from smartnation_policy.workloads import selector_matches

pytestmark = pytest.mark.unit

LABELS = {"app": "broker", "tier": "data"}


@pytest.mark.parametrize(
    ("selector", "selects"),
    [
        ({}, True),
        ({"matchLabels": {"app": "broker"}}, True),
        ({"matchLabels": {"app": "database"}}, False),
        ({"matchLabels": {"zone": "a"}}, False),
        ({"matchExpressions": [{"key": "app", "operator": "In", "values": ["broker", "x"]}]}, True),
        ({"matchExpressions": [{"key": "app", "operator": "In", "values": ["x"]}]}, False),
        ({"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}, False),
        ({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["broker"]}]}, False),
        ({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["x"]}]}, True),
        ({"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]}, True),
        ({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}, True),
        ({"matchExpressions": [{"key": "zone", "operator": "Exists"}]}, False),
        ({"matchExpressions": [{"key": "zone", "operator": "DoesNotExist"}]}, True),
        ({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}, False),
        (
            {
                "matchLabels": {"app": "broker"},
                "matchExpressions": [{"key": "tier", "operator": "Exists"}, {"key": "zone", "operator": "Exists"}],
            },
            False,
        ),
        (None, False),
        ("app=broker", False),
    ],
)
def test_a_label_selector_selects_as_kubernetes_does(selector: object, selects: bool) -> None:
    assert selector_matches(selector, LABELS) is selects


@pytest.mark.parametrize(
    ("selector", "everything"),
    [
        ({}, True),
        ({"matchLabels": {}}, True),
        ({"matchExpressions": []}, True),
        ({"matchLabels": {"app": "broker"}}, False),
        ({"matchExpressions": [{"key": "app", "operator": "Exists"}]}, False),
        (None, False),
    ],
)
def test_only_an_empty_selector_selects_everything(selector: object, everything: bool) -> None:
    assert _selects_everything(selector) is everything


@pytest.mark.parametrize(
    ("peer", "everything"),
    [
        ({"ipBlock": {"cidr": "0.0.0.0/0"}}, True),
        ({"ipBlock": {"cidr": "::/0"}}, True),
        ({"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}}, False),
        ({"ipBlock": {"cidr": "198.51.100.0/24"}}, False),
        ({"namespaceSelector": {}}, True),
        ({"namespaceSelector": {}, "podSelector": {}}, True),
        ({"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "broker"}}}, False),
        ({"namespaceSelector": {"matchLabels": {"name": "x"}}}, False),
        ({"podSelector": {}}, False),
        ("everything", False),
        (None, False),
    ],
)
def test_a_peer_admits_everything_only_when_it_names_no_one(peer: object, everything: bool) -> None:
    assert _peer_is_everything(peer) is everything


def test_binary_data_is_judged_as_text_only_when_it_is_clean_base64_of_utf8() -> None:
    text = "password = hunter2\n"
    encoded = base64.b64encode(text.encode()).decode()
    assert _decoded(encoded) == text
    # Junk characters make it not base64 (decoding them away would judge other bytes).
    assert _decoded(encoded[:4] + "!" + encoded[4:]) == ""
    assert _decoded(base64.b64encode(b"\xff\xfe\x00").decode()) == ""


def test_a_dependency_counts_whether_declared_or_through_a_property() -> None:
    namespace, other = object(), object()
    direct = SimpleNamespace(dependencies=[other, namespace], property_dependencies={})
    through = SimpleNamespace(dependencies=[other], property_dependencies={"metadata": [other, namespace]})
    neither = SimpleNamespace(dependencies=[other], property_dependencies={"metadata": [other]})
    assert _depends_on(direct, namespace)
    assert _depends_on(through, namespace)
    assert not _depends_on(neither, namespace)
