"""Real nodes: `stop` and `reset` find the node's processes, mounts and runtime leftovers from
the node's own paths, and never what belongs to the host or to another node."""

from __future__ import annotations

from pathlib import Path

import pytest

from smartnation.tooling.local_clusters import node_cgroups, node_leftovers
from smartnation.tooling.local_clusters.node_plan import RealNodePlan

pytestmark = pytest.mark.unit


@pytest.fixture
def plan(tmp_path) -> RealNodePlan:
    return RealNodePlan("probe", 9, 0, tmp_path / "real-nodes" / "probe")


@pytest.fixture
def fake_cgroups(tmp_path) -> Path:
    """A v1 layout: cpuset (which needs cpus/mems copied), pids, a cpu,cpuacct link, hybrid v2."""
    root = tmp_path / "cgroup"
    for name in ("cpuset", "pids", "unified"):
        (root / name).mkdir(parents=True)
        (root / name / "cgroup.procs").write_text("1\n")
    (root / "cpuset" / "cpuset.cpus").write_text("0-1\n")
    (root / "cpuset" / "cpuset.mems").write_text("0\n")
    (root / "cpu,cpuacct").symlink_to(root / "pids")
    return root


def test_node_cgroups_are_made_in_every_hierarchy_with_a_usable_cpuset(fake_cgroups, monkeypatch):
    # The kernel fills a new group's files; the fake gets empty cpuset files like a fresh v1 group.
    real_mkdir = Path.mkdir

    def mkdir(self, *args, **kwargs):
        real_mkdir(self, *args, **kwargs)
        if self.is_relative_to(fake_cgroups / "cpuset"):
            (self / "cpuset.cpus").write_text("")
            (self / "cpuset.mems").write_text("")
        (self / "cgroup.procs").write_text("")

    monkeypatch.setattr(Path, "mkdir", mkdir)
    made = node_cgroups.create("/smartnation/probe-real-0", root=fake_cgroups)
    assert {p.parent.parent.parent.name for p in made if p.name == "system"} == {"cpuset", "pids", "unified"}
    system = fake_cgroups / "cpuset" / "smartnation" / "probe-real-0" / "system"
    assert (system / "cpuset.cpus").read_text() == "0-1\n" and (system / "cpuset.mems").read_text() == "0\n"
    node_cgroups.join_system("/smartnation/probe-real-0", pid=4242, root=fake_cgroups)
    pods = fake_cgroups / "pids" / "smartnation" / "probe-real-0" / "kubepods" / "pod1"
    real_mkdir(pods, parents=True)
    (pods / "cgroup.procs").write_text("5151\n5152\n")
    assert node_cgroups.pids("/smartnation/probe-real-0", root=fake_cgroups) == {4242, 5151, 5152}
    # Another node's processes and the host's are never counted.
    assert node_cgroups.pids("/smartnation/other-real-0", root=fake_cgroups) == set()


def test_mounts_under_the_node_are_found_deepest_first_and_no_others(plan, tmp_path):
    run = plan.run_dir
    info = tmp_path / "mountinfo"
    info.write_text(
        "\n".join(
            [
                "22 1 0:21 / / rw - ext4 /dev/vda rw",
                f"30 22 0:50 / {run}/containerd/io.containerd.grpc.v1.cri/sandboxes/abc/shm rw - tmpfs shm rw",
                f"31 22 0:51 / {run}/containerd/io.containerd.runtime.v2.task/k8s.io/abc/rootfs rw - overlay o rw",
                f"32 22 0:52 / {plan.node_dir}/kubelet/pods/u/volumes/x\\040y rw - tmpfs tmpfs rw",
                f"33 22 0:53 / {run}-other/containerd rw - tmpfs tmpfs rw",
                "34 22 0:54 / /run/netns/sn-probe-0 rw - nsfs nsfs rw",
            ]
        )
    )
    found = node_leftovers.mounts_under(run, plan.node_dir, mountinfo=info)
    assert f"{plan.node_dir}/kubelet/pods/u/volumes/x y" in found
    assert not any(p.startswith(f"{run}-other") or p.startswith("/run/netns") for p in found)
    assert len(found) == 3
    depths = [p.count("/") for p in found]
    assert depths == sorted(depths, reverse=True)


def test_runtime_leftovers_are_matched_by_the_nodes_sandbox_ids(plan, tmp_path):
    sandboxes = plan.node_dir / "containerd" / "io.containerd.grpc.v1.cri" / "sandboxes"
    (sandboxes / "aaa111").mkdir(parents=True)
    results = tmp_path / "cni-results"
    results.mkdir()
    ours = [results / "smartnation-probe-real-0-aaa111-eth0", results / "cni-loopback-aaa111-lo"]
    theirs = results / "other-net-bbb222-eth0"
    for f in [*ours, theirs]:
        f.write_text("{}")
    assert node_leftovers.remove_cni_results(plan, results) == 2
    assert [p.name for p in results.iterdir()] == [theirs.name]
    links = tmp_path / "containers"
    links.mkdir()
    (links / "ours.log").symlink_to(plan.node_dir / "pod-logs" / "x.log")
    (links / "theirs.log").symlink_to(tmp_path / "elsewhere.log")
    assert node_leftovers.remove_container_log_links(plan, links) == 1
    assert [p.name for p in links.iterdir()] == ["theirs.log"]


def test_the_shim_socket_path_is_containerds_hash_of_address_namespace_and_sandbox(plan):
    # containerd 1.6: /run/containerd/s/<sha256 of "<grpc address>/<namespace>/<sandbox id>">.
    import hashlib

    sock = node_leftovers.shim_socket(plan, "abc")
    expected = hashlib.sha256(f"{plan.containerd_socket}/k8s.io/abc".encode()).hexdigest()
    assert sock == Path("/run/containerd/s") / expected
    other = RealNodePlan("probe", 9, 1, plan.cluster_dir)
    assert node_leftovers.shim_socket(other, "abc") != sock


def test_a_directory_bind_mounted_onto_itself_counts_as_a_mount_point(tmp_path):
    # What `ip netns add` does to /run/netns; os.path.ismount cannot see it on the same file system.
    from smartnation.tooling.local_clusters.host_record import is_mount_point

    info = tmp_path / "mountinfo"
    info.write_text(
        "22 1 254:0 / / rw - ext4 /dev/vda rw\n40 22 254:0 /run/netns /run/netns rw shared:5 - ext4 /dev/vda rw\n"
    )
    assert is_mount_point("/run/netns", info)
    assert not is_mount_point("/run", info)
