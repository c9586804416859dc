"""Reaching a deployed environment's cluster the way an operator does: `kubectl` with a context.

Only what any operator with namespace access can run against any site (the local stand-ins,
Düsseldorf, Monaco): get, exec, port-forward, annotate. Nothing reads the host's /proc or
network namespaces, so the same calls work where the nodes are someone else's machines.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

_FORWARDING = re.compile(r"Forwarding from 127\.0\.0\.1:(\d+)")


class KubectlError(Exception):
    """A kubectl call failed; the message holds the command and what kubectl said."""


@dataclass(frozen=True)
class Kubectl:
    """kubectl bound to one context and namespace."""

    context: str
    """kubeconfig context of the environment's cluster (its profile's ``context``)."""
    namespace: str
    """The environment's namespace (the ``namespace`` stack output)."""
    env: Mapping[str, str] = field(default_factory=dict, repr=False)
    """The toolchain's additions to the process environment (PATH with our kubectl, KUBECONFIG)."""

    def process_env(self) -> dict[str, str]:
        """This process's environment with the toolchain's additions: kubectl needs HOME and the
        rest (without HOME it wrote its discovery cache into the current directory)."""
        return {**os.environ, **self.env}

    def argv(self, *args: str, namespaced: bool = True) -> list[str]:
        base = ["kubectl", "--context", self.context]
        return [*base, "-n", self.namespace, *args] if namespaced else [*base, *args]

    def run(self, *args: str, timeout: float = 30, check: bool = True, namespaced: bool = True) -> str:
        argv = self.argv(*args, namespaced=namespaced)
        try:
            done = subprocess.run(argv, env=self.process_env(), capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise KubectlError(f"`{' '.join(argv[3:])}` took longer than {timeout:g}s") from None
        except OSError as error:
            raise KubectlError(f"cannot run kubectl: {error}") from None
        if check and done.returncode != 0:
            raise KubectlError(f"`{' '.join(argv[3:])}` failed: {done.stderr.strip()[-400:]}")
        return done.stdout

    def items(self, kinds: str, *selector: str, timeout: float = 30) -> list[dict[str, Any]]:
        """The objects of ``kinds`` (e.g. ``deployments,statefulsets``) in the namespace."""
        return json.loads(self.run("get", kinds, *selector, "-o", "json", timeout=timeout)).get("items", [])

    def exec(self, pod: str, container: str, argv: Sequence[str], timeout: float = 15) -> subprocess.CompletedProcess:
        """Run ``argv`` in a container; never raises for the command's own failure (see returncode)."""
        full = self.argv("exec", pod, "-c", container, "--", *argv)
        try:
            return subprocess.run(full, env=self.process_env(), capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise KubectlError(f"exec in {pod}/{container} took longer than {timeout:g}s") from None

    @contextmanager
    def port_forward(self, pod: str, port: int) -> Iterator[int]:
        """A local port forwarded to ``pod``'s ``port`` for the block (through the API server and
        kubelet into the Pod's own network namespace, so no NetworkPolicy or Ingress is in the way)."""
        argv = self.argv("port-forward", f"pod/{pod}", f":{port}")
        proc = subprocess.Popen(
            argv, env=self.process_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            match = _FORWARDING.search(line)
            if not match:
                raise KubectlError(f"port-forward to {pod}:{port} said: {line.strip() or 'nothing'}")
            yield int(match.group(1))
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


def pod_ready(pod: Mapping[str, Any]) -> bool:
    """Running with condition Ready=True."""
    status = pod.get("status", {})
    if status.get("phase") != "Running" or pod.get("metadata", {}).get("deletionTimestamp"):
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions", []))


def http_port(pod: Mapping[str, Any]) -> int:
    """The first container's port named ``http``, else its first port."""
    ports = pod["spec"]["containers"][0].get("ports", [])
    if not ports:
        raise KubectlError(f"pod {pod['metadata']['name']} declares no container port")
    named = [p for p in ports if p.get("name") == "http"]
    return int((named or ports)[0]["containerPort"])
