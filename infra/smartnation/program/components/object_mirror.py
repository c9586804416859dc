"""The bucket mirror of a move (docs/move.md, the replicate phase), on the new site.

A Deployment beside the new site's MinIO runs ``mc mirror --overwrite --remove`` from the old
site's published MinIO to its own every few seconds (INTERVAL_S): every bucket and object the
first time, then what changed (a new object, an overwrite, a delete; a bucket too). Both sites' MinIO belong to one
stack, so they share the root credentials (stack secrets): the mirror logs in to both with them.

TLS is verified on both ends. The old site's MinIO is dialled by the name its certificate was
issued for, the Service's full in-cluster name, which in the mirror's Pod resolves to the old
site's published address (hostAliases); the new site's MinIO by its ``<name>.<namespace>.svc``
name, which its own certificate carries too and the cluster's DNS answers. Go (mc) trusts the
files of ``SSL_CERT_DIR``: the old site's CA (read from its Secret at program time, a public
certificate) and the new site's.

A second container, ``reader``, idles in the Pod with a city API's image (Python, boto3): the
move's verification reads the new site's objects through it (cli/compare.py), as it reads the
old site's through that site's telemetry-ingest Pod.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from smartnation.program.components import pods
from smartnation.program.components.stateful import Children
from smartnation.settings.models import Compute, Resources

MIRROR = "mirror"
"""``app.kubernetes.io/component`` of the mirror's Pod, under the object storage's names."""
SOURCE_CA_SUFFIX = "source-ca"
"""``<env>-object-storage-source-ca``: the old site's CA, on the new site."""
READER = "reader"
"""The container the move's verification runs its object reader in."""
CA_DIR = "/etc/smartnation/mirror-cas"
"""``SSL_CERT_DIR``: both sites' CAs (``source.crt``, ``site.crt``)."""
MIRROR_UID = 1000
"""The mc image's user; the reader runs as its own image's (READER_UID)."""
READER_UID = 10001
INTERVAL_S = 5
"""Seconds between two mirror passes: how long a change may wait, besides its own copy."""
WAIT_TRIES = 120
"""Tries, 5 s apart, of the mirror's first login to either MinIO: the old site's admits it once
its load balancer and NetworkPolicy are there, the new one's once its setup ran."""

RESOURCES = Resources(requests=Compute(cpu="50m", memory="64Mi"), limits=Compute(cpu="500m", memory="512Mi"))
"""mc streams each object through: CPU for TLS, memory for its queue of changes."""
READER_RESOURCES = Resources(requests=Compute(cpu="5m", memory="32Mi"), limits=Compute(cpu="500m", memory="256Mi"))
"""Asleep but for a verification, which hashes objects one at a time."""


@dataclass(frozen=True)
class MirrorSource:
    """The old site's MinIO as the new site's mirror reaches it."""

    host: str
    """The name the old MinIO's certificate was issued for (its Service's full in-cluster name),
    which TLS checks; in the mirror's Pod it resolves to ``address``."""
    address: pulumi.Input[str]
    """The old MinIO's published (LoadBalancer) address."""
    ca_pem: str
    """The old site's issuer CA."""
    reader_image: str | None = None
    """A city API's image (Python and boto3) for the ``reader`` container; None: no reader."""


def mirror_script() -> str:
    """The mirror (dash): log in to both MinIO (waiting, bounded, for each to admit it), then one
    `mc mirror` pass every ``$MIRROR_INTERVAL`` seconds, for ever.

    A pass lists both sides and copies what is new or newer on the source (a new object, an
    overwrite: its modification time is after the copy's), removes what the source no longer has,
    for every bucket. Passes, not `mc mirror --watch`: the watch follows MinIO's listen
    notifications, and the MinIO built here sends none (`mc watch` saw no event for a put on
    either site, seen on the real nodes); a pass misses nothing a notification could have missed.
    It stops at SIGTERM: the shell is PID 1 of its container, so it needs the trap, and mc and the
    sleep run in the background, waited for, since a trap runs only once the foreground command
    is over."""
    return (
        "\n".join(
            [
                "set -u",
                "trap 'exit 0' TERM INT",
                'for end in "source $SOURCE_ENDPOINT" "target $TARGET_ENDPOINT"; do',
                "    set -- $end",
                "    tries=0",
                '    until mc alias set "$1" "$2" "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" > /dev/null 2>&1 \\',
                '        && mc ls "$1" > /dev/null 2>&1; do',
                "        tries=$((tries + 1))",
                f'        if [ "$tries" -ge {WAIT_TRIES} ]; then',
                '            echo "$1 ($2) did not admit the mirror" >&2; exit 1',
                "        fi",
                '        echo "waiting for $1 ($2)"; sleep 5 & wait $!',
                "    done",
                "done",
                'echo "mirroring every bucket of $SOURCE_ENDPOINT to $TARGET_ENDPOINT every $MIRROR_INTERVAL s"',
                "while :; do",
                "    mc mirror --overwrite --remove --retry source/ target/ & wait $! \\",
                '        || echo "mirror pass failed (exit $?); again in $MIRROR_INTERVAL s" >&2',
                '    sleep "$MIRROR_INTERVAL" & wait $! || break',
                "done",
                'echo "the wait between passes failed (MIRROR_INTERVAL=$MIRROR_INTERVAL)" >&2',
                "exit 1",
            ]
        )
        + "\n"
    )


def reader_command() -> list[str]:
    """Sleeps until SIGTERM, then exits 0 (PID 1 ignores a signal it has no handler for)."""
    return [
        "python3.11",
        "-c",
        "import signal, sys; signal.signal(signal.SIGTERM, lambda *_: sys.exit(0)); signal.pause()",
    ]


def mirror(
    children: Children,
    source: MirrorSource,
    *,
    port: int,
    root: str,
    client_image: str,
    target_endpoint: str,
    after: pulumi.Resource,
) -> k8s.apps.v1.Deployment:
    """The mirror's Deployment (one Pod: two mc mirrors would race each other) and the old site's
    CA. ``children``: the object storage's; ``root``: its root Secret; ``port``: MinIO's."""
    names = children.names
    ca_secret = children.secret(SOURCE_CA_SUFFIX, {"ca.crt": source.ca_pem})
    cas = {
        "name": "cas",
        "projected": {
            "default_mode": 0o444,
            "sources": [
                {"secret": {"name": names.child(SOURCE_CA_SUFFIX), "items": [{"key": "ca.crt", "path": "source.crt"}]}},
                # The new site's own key pair Secret (object_storage.tls_secret_name): its CA only.
                {"secret": {"name": names.child("tls"), "items": [{"key": "ca.crt", "path": "site.crt"}]}},
            ],
        },
    }
    credentials = [
        pods.secret_env("MINIO_ROOT_USER", root, "MINIO_ROOT_USER"),
        pods.secret_env("MINIO_ROOT_PASSWORD", root, "MINIO_ROOT_PASSWORD"),
    ]
    containers = [
        pods.container(
            MIRROR,
            client_image,
            RESOURCES,
            command=["sh", "-c", mirror_script()],
            env=[
                {"name": "SOURCE_ENDPOINT", "value": f"https://{source.host}:{port}"},
                {"name": "TARGET_ENDPOINT", "value": target_endpoint},
                {"name": "MIRROR_INTERVAL", "value": str(INTERVAL_S)},
                {"name": "SSL_CERT_DIR", "value": CA_DIR},
                {"name": "MC_CONFIG_DIR", "value": "/tmp/mc"},
                *credentials,
            ],
            volume_mounts=[
                {"name": "cas", "mount_path": CA_DIR, "read_only": True},
                {"name": "tmp", "mount_path": "/tmp"},
            ],
        )
    ]
    if source.reader_image is not None:
        containers.append(
            pods.container(
                READER,
                source.reader_image,
                READER_RESOURCES,
                command=reader_command(),
                security_context={
                    **pods.container_security_context(),
                    "run_as_user": READER_UID,
                    "run_as_group": READER_UID,
                },
                # What the verification's reader reads its own site's MinIO with (cli/compare.py).
                env=[
                    {"name": "S3_ENDPOINT", "value": target_endpoint},
                    {"name": "AWS_CA_BUNDLE", "value": f"{CA_DIR}/site.crt"},
                    {"name": "HOME", "value": "/tmp"},
                ],
                volume_mounts=[
                    {"name": "cas", "mount_path": CA_DIR, "read_only": True},
                    {"name": "tmp", "mount_path": "/tmp"},
                ],
            )
        )
    selector = names.selector(MIRROR)
    return k8s.apps.v1.Deployment(
        children.resource_name(MIRROR),
        metadata=children.metadata(names.child(MIRROR), MIRROR),
        spec={
            "replicas": 1,
            # Never two mirrors at once: a new Pod starts after the old one is gone.
            "strategy": {"type": "Recreate"},
            "selector": {"match_labels": selector},
            "template": {
                "metadata": {"labels": names.labels(MIRROR, children.version)},
                "spec": children.pod_spec(
                    MIRROR_UID,
                    containers=containers,
                    volumes=[cas, pods.tmp_volume()],
                    # The old site's name, as its certificate has it, leads to its published address.
                    host_aliases=[{"ip": source.address, "hostnames": [source.host]}],
                ),
            },
        },
        opts=children.options(depends_on=[after, ca_secret]),
    )


__all__ = ["MIRROR", "READER", "MirrorSource", "mirror", "mirror_script", "reader_command"]
