"""What a killed test run leaves on the clusters under its session's prefix, and clearing it.

A run killed before its teardowns (kill -9, a CI timeout) leaves its namespaces behind while its
private state backend is gone, and the cluster-wide objects it names after the prefix: the admission
policy of test_delivery refuses one release in one namespace, and left behind it would refuse the
next run's update as well. Each test session clears what its own prefix left when it starts
(conftest.clusters); another session's objects are live and never touched.

A prefix is ``smartnation-<word>`` (platform_project.PROJECT, one word: with two, ``smartnation-it``
would own a session ``smartnation-it-x``'s namespaces). Its namespaces are ``<prefix>-<env>`` and,
for the scratch projects derived from it, ``<prefix>-<suffix>-<env>``; so a namespace is a prefix's
when it starts with the prefix and a dash, and is not one of the real project's (``make up``'s
``smartnation-<env>``, which an environment named ``<word>-...`` would otherwise give).
"""

from __future__ import annotations

from pathlib import Path

import yaml

from smartnation.settings.loader import list_environments
from tests.integration.platform_project import PROJECT, REPO


def deny_policy_name(prefix: str = PROJECT) -> str:
    """test_delivery's ValidatingAdmissionPolicy and its binding (both cluster-wide)."""
    return f"{prefix}-deny"


def cluster_wide(prefix: str = PROJECT) -> list[tuple[str, str]]:
    """(kind, name) of every cluster-wide object a test names after the prefix; the binding
    before its policy, as they are deleted."""
    name = deny_policy_name(prefix)
    return [("validatingadmissionpolicybinding", name), ("validatingadmissionpolicy", name)]


def real_project_namespaces(repo: Path = REPO) -> frozenset[str]:
    """The namespaces `make up` gives the real project's environments (``<project>-<env>``)."""
    project = yaml.safe_load((repo / "Pulumi.yaml").read_text())["name"]
    return frozenset(f"{project}-{env}" for env in list_environments(repo / "environments"))


def owned_by(namespace: str, prefix: str, real: frozenset[str] = frozenset()) -> bool:
    """Whether ``namespace`` is one a test session with ``prefix`` creates (``real``: the real
    project's namespaces, never a test's)."""
    return namespace.startswith(f"{prefix}-") and namespace not in real


def delete_cluster_wide(tools, context: str, prefix: str = PROJECT) -> None:
    """Deletes the prefix's cluster-wide objects on ``context``, checked: one that is not there
    is fine, any other error fails the caller."""
    for kind, name in cluster_wide(prefix):
        tools.run("kubectl", "--context", context, "delete", kind, name, "--ignore-not-found", "--wait=true")


def clear(tools, context: str, prefix: str = PROJECT) -> list[str]:
    """Deletes what killed runs of ``prefix`` left on ``context`` (its cluster-wide objects first,
    they could refuse what the next run deploys); returns the namespaces deleted."""
    delete_cluster_wide(tools, context, prefix)
    names = tools.run("kubectl", "--context", context, "get", "namespaces", "-o", "name").stdout.split()
    real = real_project_namespaces()
    stale = [n for n in names if owned_by(n.removeprefix("namespace/"), prefix, real)]
    if stale:
        tools.run("kubectl", "--context", context, "delete", "--wait=true", *stale)
    return stale
