"""Helpers of the storage tests: claims, waiting for their volumes, and removing what a test's
claims left behind (a Retain class keeps the volume and its directory on purpose)."""

from __future__ import annotations

import json
import time
from pathlib import Path


def wait_for(predicate, timeout: float = 60, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


def claim_manifest(name: str, storage_class: str | None, size: str = "1Gi") -> dict:
    spec: dict = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}
    if storage_class is not None:  # None: the cluster's default class
        spec["storageClassName"] = storage_class
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name}, "spec": spec}


def apply(tools, context: str, namespace: str, manifest: dict) -> None:
    tools.run("kubectl", "--context", context, "-n", namespace, "apply", "-f", "-", input=json.dumps(manifest))


def claim(tools, context: str, namespace: str, name: str) -> dict:
    return tools.kubectl_json(context, "-n", namespace, "get", "pvc", name)


def wait_bound(tools, context: str, namespace: str, name: str, timeout: float = 60) -> dict:
    return wait_for(
        lambda: (lambda c: c if c["status"].get("phase") == "Bound" else None)(claim(tools, context, namespace, name)),
        timeout,
    )


def volume(tools, context: str, name: str) -> dict | None:
    proc = tools.run("kubectl", "--context", context, "get", "pv", name, "-o", "json", check=False)
    return json.loads(proc.stdout) if proc.returncode == 0 else None


def volume_directory(pv: dict) -> Path:
    """The host directory of a volume the local provisioner made (it is a `local` volume)."""
    return Path(pv["spec"]["local"]["path"])


def wait_volume_gone(tools, context: str, name: str, directory: Path, timeout: float = 60) -> None:
    wait_for(lambda: volume(tools, context, name) is None and not directory.exists(), timeout)


def release_namespace_volumes(tools, context: str, namespace: str) -> None:
    """Volumes still claimed from ``namespace`` (Retain classes keep them Released): set their
    policy to Delete, so the provisioner removes them and their directories, as an operator would."""
    every = tools.kubectl_json(context, "get", "pv")["items"]
    for pv in every:
        if (pv["spec"].get("claimRef") or {}).get("namespace") == namespace:
            tools.run("kubectl", "--context", context, "patch", "pv", pv["metadata"]["name"], "--type=merge",
                      "-p", '{"spec":{"persistentVolumeReclaimPolicy":"Delete"}}', check=False)  # fmt: skip
