"""`smartnation compare` on real Pods: dev deployed on both local clusters (its own project, so
its own namespaces), the same rows, objects and devices seeded on each; compare says equal (exit
0), then one changed row on one side, one changed object, or another retained message published
by a device on one side, is named in the report (exit 1).

The seeding plays what replication will do in the move's phases: both sides hold the same data.
"""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration import primary_sql
from tests.integration.platform_project import PROJECT, REPO, PlatformProject

pytestmark = pytest.mark.integration

ENVIRONMENT = "dev"
# Its own project name: the session's shared dev (conftest dev_on_monaco) is PROJECT-dev on Monaco.
NAME = f"{PROJECT}-cmp"
NAMESPACE = f"{NAME}-{ENVIRONMENT}"
CLUSTERS = ("dusseldorf-test", "monaco-onprem")
DEVICES = [f"traffic-{i:03d}" for i in range(5)]
OBJECTS = {
    "open-data/datasets/traffic-2026-11.csv": b"device,count\ntraffic-000,12\n",
    "telemetry-archive/2026/11/29/00.jsonl": b'{"n": 1}\n' * 100,
}


def _secret(tools, context: str, name: str, key: str) -> str:
    data = tools.kubectl_json(context, "-n", NAMESPACE, "get", "secret", name)["data"]
    return base64.b64decode(data[key]).decode()


def _psql(tools, context: str, database: str, sql: str) -> str:
    return primary_sql.psql(tools, context, NAMESPACE, ENVIRONMENT, database, sql)


_PUT_OBJECTS = """\
import base64, json, os, sys
import boto3
from botocore.config import Config
given = json.loads(sys.stdin.readline())
s3 = boto3.client("s3", endpoint_url=os.environ["S3_ENDPOINT"], region_name="us-east-1",
                  aws_access_key_id=given["user"], aws_secret_access_key=given["password"],
                  config=Config(s3={"addressing_style": "path"}, signature_version="s3v4"))
for path, body in given["objects"].items():
    bucket, key = path.split("/", 1)
    s3.put_object(Bucket=bucket, Key=key, Body=base64.b64decode(body))
print("put", len(given["objects"]))
"""


def _put_objects(tools, context: str, objects: dict[str, bytes]) -> None:
    pods = tools.kubectl_json(context, "-n", NAMESPACE, "get", "pods", "-l",
                              "app.kubernetes.io/component=telemetry-ingest")["items"]  # fmt: skip
    root = f"{ENVIRONMENT}-object-storage-root"
    given = {
        "user": _secret(tools, context, root, "MINIO_ROOT_USER"),
        "password": _secret(tools, context, root, "MINIO_ROOT_PASSWORD"),
        "objects": {k: base64.b64encode(v).decode() for k, v in objects.items()},
    }
    tools.run("kubectl", "--context", context, "-n", NAMESPACE, "exec", "-i", pods[0]["metadata"]["name"], "--",
              "python3.11", "-c", _PUT_OBJECTS, input=json.dumps(given) + "\n")  # fmt: skip


SEED_TELEMETRY = """\
INSERT INTO readings (device_id, ts, domain, metrics, received_at, stored_at)
SELECT 'traffic-' || lpad((i % 5)::text, 3, '0'), timestamptz '2026-11-27 00:00:00+00' + i * interval '17 minutes',
       'traffic', jsonb_build_object('vehicles', i), timestamptz '2026-11-29 00:00:00+00',
       timestamptz '2026-11-29 00:00:01+00'
FROM generate_series(1, 300) AS i;
UPDATE schema_migrations SET applied_at = timestamptz '2026-11-01 00:00:00+00';
"""
SEED_DEVICES = (
    "INSERT INTO devices (id, device_class, latitude, longitude, location_label, registered_at) VALUES "
    + ", ".join(f"('{d}', 'traffic-sensor', 43.73, 7.42, 'Boulevard {i}', '2026-11-01')" for i, d in enumerate(DEVICES))
    + ";\nUPDATE schema_migrations SET applied_at = timestamptz '2026-11-01 00:00:00+00';\n"
)


# Both sides must be still while they are compared (the cutover stops the writes). The ingest's
# hourly archiver writes on its own (an object and an `archived_hours` row per closed hour, at its
# own moment on each side): a grace of 30 days keeps it from archiving anything during the test.
HOLD_ARCHIVER = """
city_apis:
  telemetry_ingest:
    extra_env: {ARCHIVE_GRACE_SECONDS: "2592000"}
"""


@pytest.fixture(scope="module")
def dev_on_both(tmp_path_factory, tools, clusters) -> Iterator[dict[str, PlatformProject]]:
    """dev deployed on each cluster, one stack each (each with its own state backend), then seeded
    alike; both destroyed at the end."""
    projects: dict[str, PlatformProject] = {}
    try:
        for cluster in CLUSTERS:
            state = tmp_path_factory.mktemp(f"state-{cluster}")
            backend = {"PULUMI_BACKEND_URL": f"file://{state}", "PULUMI_CONFIG_PASSPHRASE": "integration-tests"}
            project = PlatformProject.create(tmp_path_factory.mktemp(f"dev-{cluster}"), tools, backend, name=NAME)
            if cluster != "dusseldorf-test":
                project.set_cluster(ENVIRONMENT, cluster)
            with (project.root / "environments" / f"{ENVIRONMENT}.yaml").open("a") as file:
                file.write(HOLD_ARCHIVER)
            project.init_stack(ENVIRONMENT)
            projects[cluster] = project
            project.pulumi("up", "--yes", "--skip-preview", "--stack", ENVIRONMENT, timeout=2400)
        for cluster in CLUSTERS:
            _psql(tools, cluster, "telemetry", SEED_TELEMETRY)
            _psql(tools, cluster, "devices", SEED_DEVICES)
            _put_objects(tools, cluster, OBJECTS)
        yield projects
    finally:
        for project in projects.values():
            project.destroy(ENVIRONMENT)


def _compare(tools, project: PlatformProject, report: Path):
    proc = tools.run(
        sys.executable, "-m", "smartnation.cli.main", "compare", ENVIRONMENT,
        "--from", CLUSTERS[0], "--to", CLUSTERS[1], "--namespace", NAMESPACE,
        "--report", str(report), check=False, cwd=REPO,
        env={"SMARTNATION_ENVIRONMENTS_DIR": str(project.root / "environments")}, timeout=900,
    )  # fmt: skip
    return proc, json.loads(report.read_text())


def test_the_same_data_on_both_clusters_compares_equal(dev_on_both, tools, tmp_path):
    proc, report = _compare(tools, dev_on_both[CLUSTERS[0]], tmp_path / "equal.json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert report["equal"] is True and report["differences"] == []
    counts = report["counts"]["source"]
    assert counts == report["counts"]["target"]
    # 300 readings three days long: chunks of one day each, counted one by one.
    assert counts["chunks"] >= 3 and counts["devices"] == len(DEVICES) and counts["objects"] == len(OBJECTS)
    assert counts["tables"] >= 6 and counts["buckets"] >= 3
    print(proc.stdout)


def test_one_changed_row_on_one_side_is_named(dev_on_both, tools, tmp_path):
    change = "UPDATE readings SET metrics = '{\"vehicles\": -1}' WHERE ts = "
    first = _psql(tools, CLUSTERS[1], "telemetry", "SELECT ts FROM readings ORDER BY ts LIMIT 1 OFFSET 1;").strip()
    original = _psql(tools, CLUSTERS[1], "telemetry", f"SELECT metrics FROM readings WHERE ts = '{first}';").strip()
    _psql(tools, CLUSTERS[1], "telemetry", f"{change}'{first}';")
    try:
        proc, report = _compare(tools, dev_on_both[CLUSTERS[0]], tmp_path / "row.json")
    finally:
        _psql(tools, CLUSTERS[1], "telemetry", f"UPDATE readings SET metrics = '{original}' WHERE ts = '{first}';")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    named = {(d["section"], d["key"].split(" [")[0]) for d in report["differences"]}
    assert named == {("tables", "telemetry.public.readings"), ("chunks", "telemetry.public.readings")}, report
    # Same count, another checksum: the row changed, none went missing.
    table = next(d for d in report["differences"] if d["section"] == "tables")
    assert table["source"].split()[0] == table["target"].split()[0] == "rows=300"
    assert "telemetry.public.readings" in proc.stdout


def test_one_changed_object_is_named(dev_on_both, tools, tmp_path):
    key = "open-data/datasets/traffic-2026-11.csv"
    _put_objects(tools, CLUSTERS[0], {key: OBJECTS[key].replace(b"12", b"13")})
    try:
        proc, report = _compare(tools, dev_on_both[CLUSTERS[0]], tmp_path / "object.json")
    finally:
        _put_objects(tools, CLUSTERS[0], {key: OBJECTS[key]})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert [(d["section"], d["key"]) for d in report["differences"]] == [("objects", key)], report
    assert f"objects {key}: source" in proc.stdout


def _publish_retained(tools, clusters, cluster: str, device: str, payload: bytes, workdir: Path) -> None:
    """A device of the site publishes a retained reading on the broker's public TLS address, with
    its own client certificate (common name = its id) signed by the site CA, as a real one would."""
    import ssl
    import subprocess

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    profile = next(c for c in clusters.profiles() if c.name == cluster)
    ca = clusters.cert_manager(profile).ca
    key, csr, cert = (workdir / f"{cluster}-{device}.{ext}" for ext in ("key", "csr", "crt"))
    for argv in (
        ["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={device}"],
        ["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca.cert_file), "-CAkey", str(ca.key_file),
         "-CAcreateserial", "-days", "1", "-out", str(cert)],
    ):  # fmt: skip
        subprocess.run(argv, check=True, capture_output=True)
    service = tools.kubectl_json(cluster, "-n", NAMESPACE, "get", "service", f"{ENVIRONMENT}-broker")
    address = service["status"]["loadBalancer"]["ingress"][0]["ip"]
    context = ssl.create_default_context(cafile=str(ca.cert_file))
    context.check_hostname = False  # reached by its load-balancer address; the chain is still checked
    context.load_cert_chain(str(cert), str(key))
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=device, protocol=mqtt.MQTTv5)
    client.tls_set_context(context)
    client.connect(address, 8883)
    client.loop_start()
    try:
        info = client.publish(f"city/traffic/{device}/telemetry", payload, qos=1, retain=True)
        info.wait_for_publish(timeout=30)
        assert info.is_published(), f"{cluster}: the broker did not acknowledge the retained message"
    finally:
        client.disconnect()
        client.loop_stop()


def test_a_different_retained_message_on_one_side_is_named(dev_on_both, tools, clusters, tmp_path):
    # Not a valid reading (the ingest drops it, so no row changes): only the broker keeps it.
    device = DEVICES[0]
    for cluster in CLUSTERS:
        _publish_retained(tools, clusters, cluster, device, b"retained, not a reading", tmp_path)
    proc, report = _compare(tools, dev_on_both[CLUSTERS[0]], tmp_path / "retained-equal.json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert report["counts"]["source"]["retained"] == report["counts"]["target"]["retained"] == 1
    _publish_retained(tools, clusters, CLUSTERS[1], device, b"another retained message", tmp_path)
    proc, report = _compare(tools, dev_on_both[CLUSTERS[0]], tmp_path / "retained-different.json")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    topic = f"city/traffic/{device}/telemetry"
    assert [(d["section"], d["key"]) for d in report["differences"]] == [("retained", topic)], report
