"""`pulumi destroy` of an environment that ran for real leaves nothing on the real node but
what its storage class keeps on purpose.

dev, deployed once for the session on Monaco's real node (conftest ``dev_on_monaco``), is
destroyed here, after every other test that uses it: no container, process or mount of its Pods
may outlive the destroy. Monaco's classes retain volumes (the data vault keeps data until an
operator reclaims it), so its volumes must be Released with their data still there, and go only
when reclaimed (released_volumes.py, as every test session does at its end). What is looked for
is recorded from the running environment first (Pod UIDs, container IDs, volumes), so the checks
cannot pass by looking for nothing.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.integration import released_volumes
from tests.integration.platform_project import PROJECT

pytestmark = [pytest.mark.integration, pytest.mark.runs_last]

CLUSTER = "monaco-onprem"
NAMESPACE = f"{PROJECT}-dev"
CGROUPS = Path("/sys/fs/cgroup/memory/smartnation")


def _leftovers(uids: list[str], containers: list[str], tools) -> list[str]:
    found = []
    mounts = Path("/proc/self/mountinfo").read_text().splitlines()
    found += [f"mount {line.split()[4]}" for line in mounts if any(u in line for u in uids)]
    for cgroup in CGROUPS.rglob("*"):
        if cgroup.is_dir() and any(u in cgroup.name for u in uids):
            found.append(f"cgroup {cgroup}")
    for pid in (p for p in Path("/proc").iterdir() if p.name.isdigit()):
        try:
            cgroup = pid.joinpath("cgroup").read_text()
        except OSError:
            continue
        if any(c in cgroup for c in containers):
            found.append(f"process {pid.name} of a container of {NAMESPACE}")
    if tools.run("kubectl", "--context", CLUSTER, "get", "namespace", NAMESPACE, check=False).returncode == 0:
        found.append(f"namespace {NAMESPACE}")
    return found


def _volumes(tools) -> dict[str, dict]:
    return {
        v["metadata"]["name"]: v
        for v in tools.kubectl_json(CLUSTER, "get", "pv")["items"]
        if v["spec"].get("claimRef", {}).get("namespace") == NAMESPACE
    }


def test_destroy_leaves_no_container_or_mount_and_retains_only_what_the_class_retains(dev_on_monaco, tools):
    pods = tools.kubectl_json(CLUSTER, "-n", NAMESPACE, "get", "pods")["items"]
    running = [p for p in pods if p["status"].get("phase") == "Running"]
    assert running, f"nothing runs in {NAMESPACE} to be destroyed"
    uids = [p["metadata"]["uid"] for p in pods]
    containers = [
        s["containerID"].split("//", 1)[1]
        for p in running
        for s in p["status"].get("containerStatuses", [])
        if s.get("containerID")
    ]
    volumes = _volumes(tools)
    assert volumes, f"{NAMESPACE} has no volumes to check"
    assert {v["spec"]["persistentVolumeReclaimPolicy"] for v in volumes.values()} == {"Retain"}, (
        "Monaco's classes retain volumes; this test is about that case"
    )
    # Each recorded trace is there now: the same checks after the destroy mean something.
    assert len(_leftovers(uids, containers, tools)) >= len(containers) + len(uids) + 1

    dev_on_monaco.pulumi("destroy", "--yes", "--skip-preview", "--stack", "dev")
    deadline = time.monotonic() + 180
    while (left := _leftovers(uids, containers, tools)) and time.monotonic() < deadline:
        time.sleep(3)
    assert not left, f"left on the real node after destroy: {left}"

    # Retained by policy: Released, data in place, nothing else may claim it.
    deadline = time.monotonic() + 60
    while True:
        kept = _volumes(tools)
        phases = {name: v["status"]["phase"] for name, v in kept.items()}
        if set(phases.values()) == {"Released"}:
            break
        assert time.monotonic() < deadline, f"volumes not Released: {phases}"
        time.sleep(2)
    assert set(kept) == set(volumes)
    assert all(released_volumes.volume_directory(v).is_dir() for v in kept.values())

    reclaimed = released_volumes.reclaim(tools, CLUSTER)
    assert set(volumes) <= set(reclaimed)
    assert not _volumes(tools)
    assert not [n for n, v in volumes.items() if released_volumes.volume_directory(v).exists()]
