"""What the replicate phase of a move needs to know beyond the settings (docs/move.md).

- Where the new site's connections arrive from at the old site: the old site's database admits
  the replication role from there alone (pg_hba, NetworkPolicy, the load balancer's source
  ranges). Between the local stand-ins that is the site link's router address on the old site's
  link, ``10.213.<site>.253`` (tooling/local_clusters/site_link.py masquerades every connection
  from another site to it). Between real sites it would be the new site's egress address, which
  no profile declares yet: such a move is refused, naming the missing piece.
- The old site's issuer CA, which the new site's standby must trust to verify the old primary's
  certificate (TLS verify-full). Only ``ca.crt`` of the old database's TLS Secret is read
  (kubectl, the source cluster's context): a CA certificate is public, it lands on the new site in
  a Secret beside the standby and its digest in the stack's outputs. Reading the Secret through
  the provider (``Secret.get``) would store the server's private key in the stack's state too.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence

from smartnation.program import naming
from smartnation.program.components import broker, database, object_storage, stateful
from smartnation.settings import SettingsError
from smartnation.settings.models import ClusterProfile, Settings
from smartnation.tooling.local_clusters.site_link import SiteEnd

READER_API = "telemetry-ingest"
"""The city API whose Pods read an environment's objects and retained messages for a comparison
(its image has boto3 and paho-mqtt; the NetworkPolicies let it reach both): on the new site
during a move, its image runs the bucket mirror's reader (components/object_mirror.py)."""


def published_services(environment: str, broker_pods: int) -> tuple[tuple[str, Mapping[str, str], int], ...]:
    """(name, pod selector, port) of each Service that publishes a service of the old site to the
    new site's link addresses alone during a move: the database primary (the standby's clone and
    WAL stream), the object storage (the bucket mirror) and each of the ``broker_pods`` broker
    pods' internal listener (the broker bridge). The components name their Services so, and the
    policy pack admits these and no other (cli/policy.py)."""
    db = naming.names(environment, naming.DATABASE)
    storage = naming.names(environment, naming.OBJECT_STORAGE)
    mqtt = naming.names(environment, naming.BROKER)
    return (
        (db.child(stateful.PUBLISHED_SUFFIX), db.selector(naming.PRIMARY), database.PORT),
        (storage.child(stateful.PUBLISHED_SUFFIX), storage.selector(naming.SERVER), object_storage.PORT),
        *(
            (
                mqtt.child(f"{stateful.PUBLISHED_SUFFIX}-{index}"),
                broker.published_pod_selector(environment, index),
                broker.INTERNAL_PORT,
            )
            for index in range(broker_pods)
        ),
    )


def arrival_addresses(settings: Settings, source: ClusterProfile, clusters: Sequence[str]) -> tuple[str, ...]:
    """CIDRs another site's connections reach ``source`` from; ``clusters``: every profile's name
    (the local stand-ins number their sites in that sorted order, as `make clusters` does)."""
    if source.simulation is None:
        raise SettingsError(
            settings.source,
            "move",
            f"{source.name} is a real cluster: a move from it needs the address the new site's "
            "connections arrive from there, which no cluster profile declares yet; only the local "
            "stand-ins' site link is known (docs/move.md)",
        )
    site = sorted(clusters).index(source.name)
    end = SiteEnd(source.name, site, node_netns="", published=())
    return (f"{end.wan_ip}/32",)


MOCK_CA = "-----BEGIN CERTIFICATE-----\nnot read under mocks\n-----END CERTIFICATE-----\n"
"""What ``read_source_ca`` gives outside the engine (unit tests): no cluster is asked."""


def read_source_ca(context: str, namespace: str, secret: str) -> str:
    """PEM of ``ca.crt`` in ``secret`` on the cluster of ``context`` (the provider's kubeconfig:
    ``KUBECONFIG`` as the engine was given it). Fails closed: no CA, no standby."""
    from pulumi.runtime.mocks import MockMonitor
    from pulumi.runtime.settings import get_monitor

    monitor = get_monitor()
    if monitor is None or isinstance(monitor, MockMonitor):
        return MOCK_CA
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise SettingsError("Pulumi.yaml", "<program>", "cannot find kubectl on PATH to read the source's CA")
    proc = subprocess.run(
        [kubectl, "--context", context, "-n", namespace, "get", "secret", secret, "-o", "json"],
        capture_output=True,
        text=True,
        env=os.environ,
        timeout=60,
    )
    if proc.returncode != 0:
        raise SettingsError(
            "Pulumi.yaml",
            "<program>",
            f"cannot read the CA of {context}/{namespace} Secret {secret} for the move's standby: "
            f"{proc.stderr.strip()[-400:]}",
        )
    data = json.loads(proc.stdout).get("data") or {}
    if "ca.crt" not in data:
        raise SettingsError("Pulumi.yaml", "<program>", f"{context}/{namespace} Secret {secret} has no ca.crt")
    return base64.b64decode(data["ca.crt"]).decode()


def fingerprint(pem: str) -> str:
    """sha256 of the CA as the new site holds it: the outputs show which CA the standby trusts."""
    return hashlib.sha256(pem.encode()).hexdigest()
