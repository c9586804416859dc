"""Unit: every NetworkPolicy the guardrails write names real Pods, by labels only, on TCP ports.

tests/unit/test_stack.py::test_exactly_the_needed_flows proves each needed flow is let through;
a peer or a policy whose selector lost its labels still passes there, because an empty pod
selector is every Pod of the namespace: the policy is then wider, not broken. Here each selector
must select Pods the stack runs, so a widened or misnamed one fails (found by mutation testing).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.harness import BuiltStack

pytestmark = pytest.mark.unit

NETPOL = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
WORKLOADS = ("kubernetes:apps/v1:StatefulSet", "kubernetes:apps/v1:Deployment", "kubernetes:batch/v1:Job")
CRONJOB = "kubernetes:batch/v1:CronJob"


def pod_labels(stack: BuiltStack) -> list[dict[str, str]]:
    """The labels of every Pod the stack's workloads start."""
    labels = [r.plain["spec"]["template"]["metadata"]["labels"] for r in stack.of_type(*WORKLOADS)]
    labels += [r.plain["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"] for r in stack.of_type(CRONJOB)]
    return labels


def selected(selector: dict[str, Any], pods: list[dict[str, str]]) -> int:
    assert set(selector) == {"matchLabels"}, selector
    wanted = selector["matchLabels"]
    assert wanted and all(isinstance(v, str) and v for v in wanted.values()), selector
    # A component's Pods are named by their role too (primary, replica, setup...): the whole
    # component would let a flow meant for one role reach them all.
    assert "app.kubernetes.io/name" not in wanted or "app.kubernetes.io/component" in wanted, selector
    return sum(all(labels.get(k) == v for k, v in wanted.items()) for labels in pods)


# Where every role runs (dev has no database replica, so its policies' replica peers select
# nothing there, harmlessly).
@pytest.fixture(params=["staging", "production"])
def stack(request: pytest.FixtureRequest, build_stack) -> BuiltStack:
    return build_stack(request.param)


def test_each_policy_and_each_pod_peer_selects_pods_of_the_stack_by_their_labels(stack: BuiltStack) -> None:
    pods = pod_labels(stack)
    policies = [r.plain["spec"] for r in stack.of_type(NETPOL)]
    # The namespace-wide ones (default deny, DNS for all) are the only empty selectors.
    assert sum(p["podSelector"] == {} for p in policies) == 2
    for policy in (p for p in policies if p["podSelector"] != {}):
        assert selected(policy["podSelector"], pods) >= 1, policy["podSelector"]
        for rule in policy.get("ingress", []) + policy.get("egress", []):
            for peer in rule.get("from", []) + rule.get("to", []):
                assert len(peer) == 1 and set(peer) <= {"podSelector", "namespaceSelector", "ipBlock"}, peer
                if "podSelector" in peer:
                    assert selected(peer["podSelector"], pods) >= 1, (policy["podSelector"], peer)


def test_every_rule_names_its_peers_and_its_ports(stack: BuiltStack) -> None:
    # A rule without peers allows every peer, one without ports every port.
    for policy in (r.plain["spec"] for r in stack.of_type(NETPOL)):
        assert set(policy) <= {"podSelector", "policyTypes", "ingress", "egress"}, policy
        assert policy["policyTypes"] and set(policy["policyTypes"]) <= {"Ingress", "Egress"}, policy
        for direction, peers in (("ingress", "from"), ("egress", "to")):
            for rule in policy.get(direction, []):
                assert set(rule) == {peers, "ports"} and rule[peers] and rule["ports"], (policy["podSelector"], rule)


def test_every_port_is_tcp_but_dns_which_is_also_udp(stack: BuiltStack) -> None:
    dns = [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]
    for policy in (r.plain["spec"] for r in stack.of_type(NETPOL)):
        for rule in policy.get("ingress", []) + policy.get("egress", []):
            assert not any(p["protocol"] == "UDP" for p in rule["ports"]) or rule["ports"] == dns, rule
            for port in rule.get("ports", []):
                assert set(port) == {"protocol", "port"}, port
                assert 1 <= port["port"] <= 65535, port
                assert port["protocol"] == "TCP" or (port["protocol"] == "UDP" and port["port"] == 53), port
