"""Unit: the object storage component (smartnation/program/components/object_storage.py).

The setup script runs here, by sh, against a stand-in `mc` that records every call and answers
the listings with users and policies of our choosing: which buckets are made public or private
again, which user gets which policy, and that the retirement removes what the setup once made
and the settings no longer declare, never a user made by hand (tests/contract/
test_object_storage_setup.py runs the same script against a real MinIO). The component is then
built alone under the Pulumi mocks: what the APIs, the backup and MinIO's own peers rely on.
"""

from __future__ import annotations

import dataclasses
import json
import stat
import subprocess
from pathlib import Path
from typing import Any

import pulumi
import pytest

from smartnation.program import naming
from smartnation.program.components import object_storage
from smartnation.settings import load_settings
from smartnation.settings.models import Bucket, ObjectStorageSettings, Settings, StorageUser
from smartnation.settings.stack_secrets import object_storage_secret_key
from tests.unit.component_build import BuiltComponent, build_component
from tests.unit.harness import REPO_ENVIRONMENTS, fake_secret

pytestmark = pytest.mark.unit

# mc prints one compact JSON object a line (Go's encoding/json), which the script cuts as text.
# Records each call as one line; `mc admin info` fails until $READY_AFTER calls were made; the
# listings print the files the test wrote; `policy attach` exits $ATTACH_EXIT.
MC = """#!/bin/sh
echo "$*" >> "$CALLS/mc"
case "$*" in
  "admin info store")
    n=$(( $(cat "$CALLS/info" 2>/dev/null || echo 0) + 1 )); echo "$n" > "$CALLS/info"
    [ "$n" -ge "${READY_AFTER:-1}" ] ;;
  "admin user list store --json") cat "$CALLS/users.json" ;;
  "admin policy ls store --json") cat "$CALLS/policies.json" ;;
  "admin policy attach "*) exit "${ATTACH_EXIT:-0}" ;;
esac
"""

READ = ["s3:GetBucketLocation", "s3:ListBucket", "s3:GetObject"]
WRITE = [
    "s3:PutObject",
    "s3:DeleteObject",
    "s3:AbortMultipartUpload",
    "s3:ListMultipartUploadParts",
    "s3:ListBucketMultipartUploads",
]


@pytest.fixture(scope="module")
def dev() -> Settings:
    return load_settings("dev", REPO_ENVIRONMENTS)


def _storage(**changes: Any) -> ObjectStorageSettings:
    return dataclasses.replace(load_settings("dev", REPO_ENVIRONMENTS).object_storage, **changes)


# --- policies, CA, names -------------------------------------------------------------------


def test_a_read_user_may_only_read_and_only_its_buckets() -> None:
    user = StorageUser(name="reader", buckets=("a", "b"), access="read")
    assert json.loads(object_storage.policy_document(user)) == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": READ,
                "Resource": ["arn:aws:s3:::a", "arn:aws:s3:::a/*", "arn:aws:s3:::b", "arn:aws:s3:::b/*"],
            }
        ],
    }


def test_a_readwrite_user_may_also_write_and_delete() -> None:
    user = StorageUser(name="writer", buckets=("a",), access="readwrite")
    (statement,) = json.loads(object_storage.policy_document(user))["Statement"]
    assert statement["Action"] == READ + WRITE
    assert statement["Resource"] == ["arn:aws:s3:::a", "arn:aws:s3:::a/*"]


def test_a_client_gets_only_the_issuers_ca_and_both_kinds_of_client_find_it() -> None:
    assert object_storage.tls_secret_name("dev") == "dev-object-storage-tls"
    assert object_storage.ca_volume("ca", "dev") == {
        "name": "ca",
        "secret": {"secret_name": "dev-object-storage-tls", "items": [{"key": "ca.crt", "path": "ca.crt"}]},
    }
    ca_file = "/etc/smartnation/object-storage-ca/ca.crt"
    assert ca_file == object_storage.CA_FILE
    assert object_storage.ca_env() == [
        {"name": "SSL_CERT_FILE", "value": ca_file},
        {"name": "AWS_CA_BUNDLE", "value": ca_file},
    ]


# --- the setup script, run ------------------------------------------------------------------


def _run_setup(
    tmp_path: Path,
    settings: ObjectStorageSettings,
    users: list[dict[str, str]] | None = None,
    policies: list[str] | None = None,
    **env: str,
) -> tuple[subprocess.CompletedProcess, list[str]]:
    tools, calls = tmp_path / "bin", tmp_path / "calls"
    tools.mkdir(parents=True, exist_ok=True)
    calls.mkdir(parents=True, exist_ok=True)
    for name, body in (("mc", MC), ("sleep", "#!/bin/sh\nexit 0\n")):
        path = tools / name
        path.write_text(body)
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    (calls / "users.json").write_text(
        "".join(json.dumps({"status": "success", **u}, separators=(",", ":")) + "\n" for u in users or [])
    )
    (calls / "policies.json").write_text(
        "".join(
            json.dumps({"status": "success", "policy": p, "isGroup": False}, separators=(",", ":")) + "\n"
            for p in policies or []
        )
    )
    script = tmp_path / "setup.sh"
    script.write_text(object_storage.setup_script(settings))
    keys = {f"SECRET_KEY_{u.name.upper().replace('-', '_')}": f"key-of-{u.name}" for u in settings.users}
    proc = subprocess.run(
        ["sh", str(script)],
        env={
            "PATH": f"{tools}:/usr/bin:/bin",
            "CALLS": str(calls),
            "MC_CONFIG_DIR": str(calls),
            "S3_ENDPOINT": "https://minio.example:9000",
            "MINIO_ROOT_USER": "root",
            "MINIO_ROOT_PASSWORD": "rootpw",
            **keys,
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    log = calls / "mc"
    return proc, log.read_text().splitlines() if log.exists() else []


def test_the_setup_makes_every_bucket_user_and_policy_the_settings_declare(tmp_path: Path) -> None:
    settings = _storage(
        buckets=(Bucket(name="private"), Bucket(name="public", anonymous_read=True)),
        users=(
            StorageUser(name="app-one", buckets=("private",), access="readwrite"),
            StorageUser(name="app-two", buckets=("public",), access="read"),
        ),
    )
    proc, calls = _run_setup(tmp_path, settings)
    assert proc.returncode == 0, proc.stderr
    assert calls == [
        "alias set store https://minio.example:9000 root rootpw",
        "admin info store",
        "mb --ignore-existing store/private",
        # Converged both ways: a bucket no longer public is made private again.
        "anonymous set none store/private",
        "mb --ignore-existing store/public",
        "anonymous set download store/public",
        "admin policy create store smartnation-app-one /setup/policy-app-one.json",
        "admin user add store app-one key-of-app-one",
        "admin policy attach store smartnation-app-one --user app-one",
        "admin policy create store smartnation-app-two /setup/policy-app-two.json",
        "admin user add store app-two key-of-app-two",
        "admin policy attach store smartnation-app-two --user app-two",
        "admin user list store --json",
        "admin policy ls store --json",
    ]
    assert proc.stdout.splitlines()[-1] == "object storage setup complete"


def test_an_already_attached_policy_is_the_converged_state(tmp_path: Path) -> None:
    settings = _storage(users=(StorageUser(name="app-one", buckets=("backups",), access="read"),))
    proc, _ = _run_setup(tmp_path, settings, ATTACH_EXIT="1")
    assert proc.returncode == 0, proc.stderr
    assert "policy smartnation-app-one attached" in proc.stdout


def test_the_setup_removes_what_it_once_made_and_never_what_was_made_by_hand(tmp_path: Path) -> None:
    settings = _storage(users=(StorageUser(name="app-one", buckets=("backups",), access="read"),))
    users = [
        {"accessKey": "app-one", "policyName": "smartnation-app-one", "userStatus": "enabled"},
        # Made by an earlier setup, no longer declared: goes.
        {"accessKey": "retired-app", "policyName": "smartnation-retired-app", "userStatus": "enabled"},
        # Made by hand: any other policy, or none, or a policy of ours not its own.
        {"accessKey": "alice", "policyName": "readwrite", "userStatus": "enabled"},
        {"accessKey": "bob", "userStatus": "enabled"},
        {"accessKey": "carol", "policyName": "smartnation-app-one", "userStatus": "enabled"},
    ]
    policies = ["smartnation-app-one", "smartnation-retired-app", "readwrite", "consoleAdmin", "app-one"]
    proc, calls = _run_setup(tmp_path, settings, users, policies)
    assert proc.returncode == 0, proc.stderr
    removed = [c for c in calls if " remove " in f" {c} " or c.startswith("admin policy rm")]
    assert removed == ["admin user remove store retired-app", "admin policy rm store smartnation-retired-app"]


def test_the_setup_waits_for_minio_a_bounded_while(tmp_path: Path) -> None:
    settings = _storage()
    proc, calls = _run_setup(tmp_path / "slow", settings, READY_AFTER="3")
    assert proc.returncode == 0, proc.stderr
    assert calls.count("admin info store") == 3
    assert proc.stdout.count("waiting for MinIO") == 2
    proc, calls = _run_setup(tmp_path / "never", settings, READY_AFTER="1000")
    assert proc.returncode == 1
    assert calls.count("admin info store") == object_storage.SETUP_WAIT_TRIES == 100
    assert proc.stderr.strip() == "MinIO at https://minio.example:9000 did not answer"
    # Nothing was made on a server that never answered.
    assert not [c for c in calls if c.startswith(("mb ", "admin user add", "admin policy create"))]


def test_the_setup_stops_at_the_first_failing_step(tmp_path: Path) -> None:
    script = object_storage.setup_script(_storage())
    assert script.startswith("#!/bin/sh\n")
    assert "set -eu" in script.splitlines()
    assert script.endswith("echo 'object storage setup complete'\n")


# --- the component, built alone ------------------------------------------------------------

SERVICE = "kubernetes:core/v1:Service"
SECRET = "kubernetes:core/v1:Secret"
STATEFULSET = "kubernetes:apps/v1:StatefulSet"
JOB = "kubernetes:batch/v1:Job"
CERTIFICATE = "kubernetes:cert-manager.io/v1:Certificate"


def _build(settings: Settings, secrets: dict[str, str] | None = None) -> BuiltComponent:
    releases = settings.releases.components

    def make(placement, opts) -> dict[str, Any]:
        storage = object_storage.ObjectStorage(
            "s",
            object_storage.ObjectStorageArgs(
                placement,
                settings.object_storage,
                release=releases["object_storage"],
                client_release=releases["object_storage_client"],
            ),
            opts,
        )
        return {"s3_endpoint": storage.s3_endpoint, "user_secret_names": storage.user_secret_names}

    return build_component(settings, make, secrets=secrets)


@pytest.fixture(scope="module", params=["dev", "production"])
def settings(request: pytest.FixtureRequest) -> Settings:
    return load_settings(request.param, REPO_ENVIRONMENTS)


# Built for each test (in well under a second): a build shared by the module would credit its code
# to the first test alone when mutmut records which tests reach which function.
@pytest.fixture
def built(settings: Settings) -> BuiltComponent:
    return _build(settings)


def _names(settings: Settings) -> naming.Names:
    return naming.names(settings.environment, naming.OBJECT_STORAGE)


def _by_name(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in items}


def test_s3_is_served_over_https_under_the_storages_own_name(settings, built) -> None:
    names = _names(settings)
    namespace = naming.namespace(settings.environment)
    assert built.outputs["s3_endpoint"] == f"https://{names.name}.{namespace}.svc.cluster.local:9000"
    api = built.one(SERVICE, "-api").plain
    assert api["metadata"]["name"] == names.name
    assert api["spec"]["type"] == "ClusterIP"
    assert api["spec"]["ports"] == [{"name": "s3", "port": 9000, "targetPort": "s3"}]
    assert api["spec"]["selector"] == names.selector(naming.SERVER)
    headless = built.one(SERVICE, "-headless").plain
    # Distributed MinIO resolves its peers before any of them is ready.
    assert headless["spec"] == {
        "clusterIP": "None",
        "selector": names.selector(naming.SERVER),
        "ports": [{"name": "s3", "port": 9000, "targetPort": "s3"}],
        "publishNotReadyAddresses": True,
    }
    assert len(built.of_type(SERVICE)) == 2
    certificate = built.one(CERTIFICATE, "-tls").plain
    assert certificate["metadata"]["namespace"] == namespace
    assert certificate["metadata"]["labels"] == names.labels(
        naming.SERVER, settings.releases.components["object_storage"].version
    )
    assert certificate["spec"]["secretName"] == object_storage.tls_secret_name(settings.environment)
    assert certificate["spec"]["issuerRef"]["name"] == settings.cluster.ingress.tls_issuer
    assert certificate["spec"]["dnsNames"] == [
        f"{names.name}.{namespace}.svc.cluster.local",
        f"{names.name}.{namespace}.svc",
        f"*.{names.child('headless')}.{namespace}.svc.cluster.local",
    ]


def test_each_user_has_its_keys_and_the_root_its_own(settings, built) -> None:
    names = _names(settings)
    assert built.outputs["user_secret_names"] == {
        u.name: names.child(f"user-{u.name}") for u in settings.object_storage.users
    }
    for user in settings.object_storage.users:
        secret = built.one(SECRET, f"-user-{user.name}").plain
        assert secret["metadata"]["name"] == names.child(f"user-{user.name}")
        assert secret["stringData"] == {
            "AWS_ACCESS_KEY_ID": user.name,
            "AWS_SECRET_ACCESS_KEY": fake_secret(object_storage_secret_key(user.name)),
        }
    root = built.one(SECRET, "-root").plain
    assert root["metadata"]["name"] == names.child("root")
    assert root["stringData"] == {
        "MINIO_ROOT_USER": fake_secret("object-storage-root-user"),
        "MINIO_ROOT_PASSWORD": fake_secret("object-storage-root-password"),
    }


def _root_env(settings: Settings) -> list[dict[str, Any]]:
    root = _names(settings).child("root")
    return [
        {"name": key, "valueFrom": {"secretKeyRef": {"name": root, "key": key}}}
        for key in ("MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD")
    ]


def test_minio_serves_https_from_its_certs_dir_over_every_pods_volume(settings, built) -> None:
    names = _names(settings)
    storage = settings.object_storage
    server = built.one(STATEFULSET, "-server")
    spec = server.plain["spec"]
    assert server.plain["metadata"]["name"] == names.name
    assert spec["replicas"] == storage.replicas
    assert spec["serviceName"] == names.child("headless")
    assert spec["podManagementPolicy"] == "Parallel"
    assert built.one(CERTIFICATE, "-tls").urn in server.dependencies
    pod = spec["template"]["spec"]
    (minio,) = pod["containers"]
    # The name the operators' tools and the TLS tests look the server up by.
    assert minio["name"] == "minio"
    release = settings.releases.components["object_storage"]
    assert minio["image"].endswith(f"/{release.repository}@{release.digest}")
    headless = f"{names.child('headless')}.{naming.namespace(settings.environment)}.svc.cluster.local"
    volumes = (
        [f"https://{names.name}-{{0...{storage.replicas - 1}}}.{headless}/data"]
        if storage.mode == "distributed"
        else ["/data"]
    )
    assert minio["args"] == [
        "server",
        "--address",
        ":9000",
        "--console-address",
        ":9001",
        "--certs-dir",
        "/etc/minio/certs",
        *volumes,
    ]
    assert minio["env"] == _root_env(settings)
    assert minio["ports"] == [{"name": "s3", "containerPort": 9000}, {"name": "console", "containerPort": 9001}]
    assert minio["readinessProbe"] == {
        "httpGet": {"path": "/minio/health/ready", "port": "s3", "scheme": "HTTPS"},
        "periodSeconds": 10,
    }
    assert minio["livenessProbe"] == {
        "httpGet": {"path": "/minio/health/live", "port": "s3", "scheme": "HTTPS"},
        "initialDelaySeconds": 30,
        "periodSeconds": 20,
        "failureThreshold": 6,
    }
    assert {m["name"]: (m["mountPath"], m.get("readOnly", False)) for m in minio["volumeMounts"]} == {
        "data": ("/data", False),
        "tmp": ("/tmp", False),
        "tls": ("/etc/minio/certs", True),
    }
    tls = _by_name(pod["volumes"])["tls"]["secret"]
    assert tls["secretName"] == names.child("tls")
    assert tls["items"] == [
        {"key": "tls.crt", "path": "public.crt"},
        {"key": "tls.key", "path": "private.key"},
        {"key": "ca.crt", "path": "CAs/ca.crt"},
    ]
    assert pod["securityContext"]["runAsUser"] == object_storage.MINIO_UID
    (claim,) = spec["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == storage.storage_size
    budget = built.one("kubernetes:policy/v1:PodDisruptionBudget", "-pdb").plain
    assert budget["spec"]["maxUnavailable"] == 1
    assert budget["metadata"]["name"] == names.name


def test_the_setup_job_runs_the_script_with_the_keys_and_verifies_minio(settings, built) -> None:
    names = _names(settings)
    storage = settings.object_storage
    config = built.one("kubernetes:core/v1:ConfigMap", "-setup").plain
    assert config["metadata"]["name"] == names.child("setup")
    assert config["data"] == {
        "setup.sh": object_storage.setup_script(storage),
        **{f"policy-{u.name}.json": object_storage.policy_document(u) for u in storage.users},
    }
    job = built.one(JOB, "-setup-job")
    assert built.one(STATEFULSET, "-server").urn in job.dependencies
    assert job.plain["metadata"]["name"].startswith(names.child("setup-"))
    assert len(job.plain["metadata"]["name"]) == len(names.child("setup-")) + 10
    pod = job.plain["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    client = settings.releases.components["object_storage_client"]
    assert container["image"].endswith(f"/{client.repository}@{client.digest}")
    assert container["command"] == ["sh", "/setup/setup.sh"]
    assert pod["securityContext"]["runAsUser"] == object_storage.MINIO_UID
    users = [
        {
            "name": "SECRET_KEY_" + u.name.upper().replace("-", "_"),
            "valueFrom": {"secretKeyRef": {"name": names.child(f"user-{u.name}"), "key": "AWS_SECRET_ACCESS_KEY"}},
        }
        for u in storage.users
    ]
    ca_file = object_storage.CA_FILE
    assert container["env"] == [
        {"name": "S3_ENDPOINT", "value": built.outputs["s3_endpoint"]},
        {"name": "MC_CONFIG_DIR", "value": "/tmp/mc"},
        {"name": "SSL_CERT_FILE", "value": ca_file},
        {"name": "AWS_CA_BUNDLE", "value": ca_file},
        *_root_env(settings),
        *users,
    ]
    assert _by_name(container["volumeMounts"])["ca"] == {
        "name": "ca",
        "mountPath": object_storage.CA_DIR,
        "readOnly": True,
    }
    assert _by_name(pod["volumes"])["ca"]["secret"]["items"] == [{"key": "ca.crt", "path": "ca.crt"}]


def test_a_new_user_key_or_script_renames_the_setup_job_and_nothing_else_does(dev) -> None:
    def job_name(built: BuiltComponent) -> str:
        return built.one(JOB, "-setup-job").plain["metadata"]["name"]

    first = job_name(_build(dev))
    assert job_name(_build(dev)) == first
    user = dev.object_storage.users[0].name
    assert job_name(_build(dev, secrets={object_storage_secret_key(user): "another-key"})) != first
    more = dataclasses.replace(
        dev,
        object_storage=dataclasses.replace(
            dev.object_storage, buckets=(*dev.object_storage.buckets, Bucket(name="x-more"))
        ),
    )
    assert job_name(_build(more)) != first


def test_the_storage_takes_its_options_and_owns_everything_it_makes(settings) -> None:
    releases = settings.releases.components

    def make(placement, opts) -> dict[str, Any]:
        before = pulumi.CustomResource("test:index:Before", "before", {}, opts=opts)
        args = object_storage.ObjectStorageArgs(
            placement,
            settings.object_storage,
            release=releases["object_storage"],
            client_release=releases["object_storage_client"],
        )
        object_storage.ObjectStorage(
            "s", args, pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[before]))
        )
        return {}

    built = build_component(settings, make)
    (before,) = built.of_type("test:index:Before")
    (component,) = built.of_type("smartnation:object_storage:ObjectStorage")
    assert before.urn in component.dependencies
    children = [r for r in built.resources if r.type.startswith("kubernetes:")]
    assert {r.parent for r in children} == {component.urn}
    # Each child is named after the component, and labelled with the release's version.
    version = releases["object_storage"].version
    for child in children:
        assert child.name.startswith("s-"), child.name
        assert child.plain["metadata"]["labels"]["app.kubernetes.io/version"] == version, child.name
