"""Real nodes: readiness is judged from the processes running now, never from what a stopped
node left behind (a socket file, a Ready condition in etcd)."""

from __future__ import annotations

import socket
from concurrent import futures

import pytest

from smartnation.tooling.local_clusters.real_nodes import cri_answers, parse_k8s_time, socket_accepts

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


class _Cri:
    """A gRPC server on a unix socket answering the CRI's Version call as containerd does: an
    UNKNOWN "server is not initialized yet" until ``ready``, then a (here empty) response."""

    def __init__(self, path, ready: bool) -> None:
        import grpc

        self.ready, self.calls = ready, []

        def version(request: bytes, context) -> bytes:
            self.calls.append(request)
            if not self.ready:
                context.abort(grpc.StatusCode.UNKNOWN, "server is not initialized yet")
            return b""

        handler = grpc.method_handlers_generic_handler(
            "runtime.v1.RuntimeService", {"Version": grpc.unary_unary_rpc_method_handler(version)}
        )
        self.server = grpc.server(futures.ThreadPoolExecutor(2))
        self.server.add_generic_rpc_handlers((handler,))
        self.server.add_insecure_port(f"unix://{path}")
        self.server.start()

    def stop(self) -> None:
        self.server.stop(None)


@pytest.mark.parametrize("ready", [False, True])
def test_the_cri_is_ready_only_once_it_answers_the_kubelets_version_call(tmp_path, ready: bool):
    path = tmp_path / "containerd.sock"
    cri = _Cri(path, ready)
    try:
        assert socket_accepts(path) is True, "the socket accepts either way"
        assert cri_answers(path) is ready
        assert cri.calls == [b""], "one empty VersionRequest"
    finally:
        cri.stop()


def test_no_cri_on_a_missing_socket(tmp_path):
    assert cri_answers(tmp_path / "absent.sock", timeout=0.5) is False
