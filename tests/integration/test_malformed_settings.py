"""Malformed environment files against a deployed environment: `pulumi up` fails with the file
and key, and nothing changes, neither in the state nor on the cluster.

dev is deployed on the Düsseldorf stand-in from a private project; then `pulumi up` runs with
one malformed file at a time (the cases of issue 12, in the environment file and in the
defaults). Each must fail naming the file and key path, and afterwards the stack export and
every object in the namespace (its uid, generation, labels, annotations and spec or data) must
be exactly as before. The comparison is shown to see a change by making one by hand at the end.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.platform_project import PROJECT, PlatformProject
from tests.unit.harness import set_dotted

pytestmark = pytest.mark.integration

ENVIRONMENT = "dev"
CONTEXT = "dusseldorf-test"
NAMESPACE = f"{PROJECT}-{ENVIRONMENT}"
# Kinds whose objects the cluster's controllers rewrite on their own (not Pulumi's): compared
# by identity (uid) only. Events are a log, not objects anyone deployed: left out.
CONTROLLER_OWNED = {"Endpoints", "EndpointSlice"}
LOGS = {"Event"}


# (what, file, dotted path, value, text expected in the failed update's output)
MALFORMED: list[tuple[str, str, str, Any, str]] = [
    (
        "invalid CIDR",
        "dev.yaml",
        "broker.device_source_ranges",
        ["10.0.0.300/8"],
        "environments/dev.yaml: broker.device_source_ranges.0:",
    ),
    (
        "empty source ranges",
        "dev.yaml",
        "broker.device_source_ranges",
        [],
        "environments/dev.yaml: broker.device_source_ranges: expected from 1 to 100 items",
    ),
    (
        "cron out of range",
        "dev.yaml",
        "database.backup",
        {"schedule": "99 99 * * *"},
        "environments/dev.yaml: database.backup.schedule:",
    ),
    (
        "password in extra_env",
        "dev.yaml",
        "city_apis.open_data_api.extra_env",
        {"PGPASSWORD": "hunter2"},
        "environments/dev.yaml: city_apis.open_data_api.extra_env.PGPASSWORD:",
    ),
    (
        "quota below the workloads",
        "dev.yaml",
        "guardrails.quota",
        {"limits_cpu": "2"},
        "environments/dev.yaml: guardrails.quota.limits_cpu:",
    ),
    (
        "reserved role in the defaults",
        "defaults.yaml",
        "database.roles.2.name",
        "postgres",
        "environments/defaults.yaml: database.roles.2.name:",
    ),
    (
        "SQL in an extension name in the defaults",
        "defaults.yaml",
        "database.databases.1.extensions",
        ["timescaledb; DROP DATABASE devices"],
        "environments/defaults.yaml: database.databases.1.extensions.0:",
    ),
    (
        "a device class on # in the defaults",
        "defaults.yaml",
        "broker.device_classes.0.subscribe",
        ["#"],
        "environments/defaults.yaml: broker.device_classes.0.subscribe.0:",
    ),
]


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


def _cluster_objects(tools) -> dict[str, str]:
    """Every object in the namespace, by kind and name -> what identifies its content."""
    kinds = tools.run(
        "kubectl", "--context", CONTEXT, "api-resources", "--verbs=list", "--namespaced", "-o", "name"
    ).stdout.split()
    items = tools.kubectl_json(CONTEXT, "-n", NAMESPACE, "get", ",".join(kinds), "--ignore-not-found")["items"]
    objects = {}
    for item in items:
        metadata = item["metadata"]
        if item["kind"] in LOGS:
            continue
        key = f"{item['apiVersion']}/{item['kind']}/{metadata['name']}"
        if item["kind"] in CONTROLLER_OWNED:
            objects[key] = metadata["uid"]
            continue
        content = {k: v for k, v in item.items() if k not in ("metadata", "status")}
        content["metadata"] = {
            k: metadata.get(k) for k in ("uid", "generation", "labels", "annotations", "ownerReferences")
        }
        objects[key] = _digest(content)
    return objects


def _export(project: PlatformProject) -> dict:
    # --show-secrets: an export re-encrypts every secret with a fresh nonce, so two exports of
    # the same state differ in their ciphertexts; decrypted, they are equal when the state is.
    return json.loads(project.pulumi("stack", "export", "--show-secrets", "--stack", ENVIRONMENT).stdout)


@pytest.fixture(scope="module")
def deployed(tmp_path_factory, tools, clusters) -> Iterator[PlatformProject]:
    backend_dir = tmp_path_factory.mktemp("state")
    backend = {"PULUMI_BACKEND_URL": f"file://{backend_dir}", "PULUMI_CONFIG_PASSPHRASE": "integration-tests"}
    project = PlatformProject.create(tmp_path_factory.mktemp("malformed"), tools, backend)
    try:
        project.init_stack(ENVIRONMENT)
        project.pulumi("up", "--yes", "--skip-preview", "--stack", ENVIRONMENT)
        yield project
    finally:
        # Destroy and check it: a teardown that fails silently leaves the namespace to the next run.
        project.pulumi("state", "unprotect", "--all", "--yes", "--stack", ENVIRONMENT, check=False)
        project.pulumi("destroy", "--yes", "--skip-preview", "--stack", ENVIRONMENT)
        left = tools.run("kubectl", "--context", CONTEXT, "get", "namespace", NAMESPACE, check=False)
        assert left.returncode != 0, f"{NAMESPACE} is still there after destroy"


def _malformed(project: PlatformProject, file: str, path: str, value: Any) -> Callable[[], None]:
    """Write the malformed file; returns what puts the original back."""
    target: Path = project.root / "environments" / file
    original = target.read_text(encoding="utf-8")
    data = yaml.safe_load(original)
    set_dotted(data, path, value)
    target.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return lambda: target.write_text(original, encoding="utf-8")


def test_malformed_files_fail_the_update_and_change_nothing(deployed: PlatformProject, tools) -> None:
    state_before = _export(deployed)
    assert _export(deployed) == state_before, "two exports of an unchanged stack differ: the comparison is unsound"
    objects_before = _cluster_objects(tools)
    assert len(objects_before) > 30, sorted(objects_before)
    assert any("/Secret/" in key for key in objects_before) and any("/StatefulSet/" in key for key in objects_before)

    for what, file, path, value, expected in MALFORMED:
        restore = _malformed(deployed, file, path, value)
        try:
            proc = deployed.pulumi("up", "--yes", "--skip-preview", "--stack", ENVIRONMENT, check=False)
        finally:
            restore()
        output = proc.stdout + proc.stderr
        assert proc.returncode != 0, f"{what}: `pulumi up` succeeded\n{output[-3000:]}"
        assert expected in output, f"{what}: the error does not name {expected!r}\n{output[-3000:]}"
        assert "Traceback" not in output, f"{what}: a traceback instead of the message\n{output[-3000:]}"

    state_after = _export(deployed)
    assert state_after["deployment"]["resources"] == state_before["deployment"]["resources"]
    assert state_after["deployment"].get("pending_operations") == state_before["deployment"].get("pending_operations")
    # The engine writes the checkpoint again after a failed update, stamping the manifest with
    # the time of that write; all else must be the same.
    for state in (state_before, state_after):
        state["deployment"]["manifest"].pop("time")
    assert state_after == state_before
    assert _cluster_objects(tools) == objects_before

    # The comparison sees a change when there is one (so equality above means something).
    config_map = next(key for key in objects_before if "/ConfigMap/" in key and "kube-root-ca" not in key)
    name = config_map.rsplit("/", 1)[-1]
    tools.run(
        "kubectl",
        "--context",
        CONTEXT,
        "-n",
        NAMESPACE,
        "annotate",
        f"configmap/{name}",
        "smartnation.test/touched=yes",
    )
    changed = _cluster_objects(tools)
    assert changed != objects_before and changed[config_map] != objects_before[config_map]
