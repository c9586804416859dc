"""Real nodes: readiness is judged from the processes running now, never from what a stopped
node left behind (a socket file, a Ready condition in etcd)."""

from __future__ import annotations

import socket

import pytest

from smartnation.tooling.local_clusters.real_nodes import parse_k8s_time, socket_accepts

pytestmark = pytest.mark.unit


def test_a_socket_file_left_by_a_stopped_process_is_not_ready(tmp_path):
    path = tmp_path / "stale.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as left_behind:
        left_behind.bind(str(path))  # the file exists from here on, like containerd's after a kill
    assert path.exists()
    assert socket_accepts(path) is False


def test_a_listening_socket_is_ready(tmp_path):
    path = tmp_path / "live.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as live:
        live.bind(str(path))
        live.listen(1)
        assert socket_accepts(path) is True


def test_a_missing_socket_is_not_ready(tmp_path):
    assert socket_accepts(tmp_path / "absent.sock") is False


def test_lease_times_are_read_with_their_microseconds_and_zone():
    assert parse_k8s_time("1970-01-01T00:00:10.500000Z") == 10.5
    assert parse_k8s_time("2026-11-29T00:00:00Z") == 1795910400.0
    assert parse_k8s_time("") is None
