"""A deployed environment as the load generator sees it: where devices connect (the broker's
load-balancer address, over TLS, with each device's own identity, exactly as `smartnation verify`
connects: its context is reused) and where the readings land (the telemetry database's primary
and, where the environment has them, the read replica open-data-api reads).

Devices log in as verify's devices do: with a client certificate of their own (cert-manager, from
the broker's issuer; deleted after the run) where verify's context issues them, else with their
class's password from the stack.

Everything comes from the stack (outputs and secrets) and kubectl with the environment's context,
as for an operator; nothing is changed in the environment but the readings it stores.
"""

from __future__ import annotations

import argparse
import ssl
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

from smartnation.cli import verify
from smartnation.cli.kubectl import Kubectl, pod_ready
from smartnation.cli.verify_checks import VerifyContext, tls_context
from smartnation.cli.workspace import select
from smartnation.settings.stack_secrets import CONFIG_NAMESPACE, DATABASE_SUPERUSER_PASSWORD

READER_ROLE = "postgres"
"""Who reads the figures back: the superuser, the one role the database admits on a Pod's loopback,
where `kubectl port-forward` arrives (daemon_config/postgres.py); its queries only read."""
TELEMETRY_DATABASE = "telemetry"
DATABASE_PORT = 5432
COMPONENT_LABEL = "app.kubernetes.io/component"


@dataclass(frozen=True)
class Deployed:
    """The environment's broker address and credentials, and how to reach its database."""

    environment: str
    ctx: VerifyContext
    reader_password: str

    @property
    def kubectl(self) -> Kubectl:
        return self.ctx.kubectl

    @property
    def broker(self) -> tuple[str, int]:
        return self.ctx.target.mqtt_address, self.ctx.target.mqtt_port

    @property
    def device_class(self) -> str:
        return self.ctx.plan.device_class

    @property
    def certificates(self) -> bool:
        """Whether devices log in with certificates (verify's context issues them)."""
        return hasattr(self.ctx, "device_identity")

    def prepare_devices(self, device_ids: Sequence[str], parallel: int = 8) -> None:
        """Issue every device's certificate up front (cert-manager, a few at once)."""
        if self.certificates:
            with ThreadPoolExecutor(parallel) as pool:
                list(pool.map(self.ctx.device_identity, device_ids))

    def retire_devices(self) -> None:
        if self.certificates:
            self.ctx.retire_identities()

    def tls(self, device_id: str) -> ssl.SSLContext:
        context = tls_context(self.ctx.broker_ca(), self.ctx.target.mqtt_hostname)
        if self.certificates:
            identity = self.ctx.device_identity(device_id)
            context.load_cert_chain(identity.certfile, identity.keyfile)
        return context

    def login(self) -> tuple[str, str] | None:
        """(class, password) where devices log in with their class's password."""
        if self.certificates:
            return None
        return self.device_class, self.ctx.passwords[self.device_class]

    def topic(self, device_id: str) -> str:
        """The reading topic of ``device_id`` in its class's publish ACL (the verify plan's topic,
        whose device level is the verify device's id)."""
        return self.ctx.plan.device_topic.replace(self.ctx.device_id, device_id)

    def database_pods(self) -> dict[str, str]:
        """Role (``primary``, ``replica``) -> a ready Pod of the environment's database."""
        found: dict[str, str] = {}
        for role in ("primary", "replica"):
            pods = [p for p in self.kubectl.items("pods", "-l", f"{COMPONENT_LABEL}={role}") if pod_ready(p)]
            pods = [p for p in pods if "database" in p["metadata"]["name"]]
            if pods:
                found[role] = pods[0]["metadata"]["name"]
        if "primary" not in found:
            raise RuntimeError(f"no ready database primary in {self.kubectl.namespace}")
        return found

    @contextmanager
    def databases(self) -> Iterator[dict[str, dict[str, Any]]]:
        """Role -> psycopg connection arguments through a port-forward, for the block."""
        with ExitStack() as stack:
            conninfo = {}
            for role, pod in self.database_pods().items():
                port = stack.enter_context(self.kubectl.port_forward(pod, DATABASE_PORT))
                conninfo[role] = {
                    "host": "127.0.0.1",
                    "port": port,
                    "dbname": TELEMETRY_DATABASE,
                    "user": READER_ROLE,
                    "password": self.reader_password,
                    "connect_timeout": 10,
                    # Loopback is admitted without TLS only (a TLS close drops the port-forward's tunnel).
                    "sslmode": "disable",
                }
            yield conninfo


def open_environment(environment: str) -> Deployed:
    """The environment from its stack (`smartnation verify`'s context: target, device plan,
    identities) plus the database superuser's password, to read the figures back."""
    args = argparse.Namespace(
        environment=environment,
        subscriber_class=verify.DEFAULT_SUBSCRIBER_CLASS,
        device_class=None,
        reading_bound=None,
        settle=None,
    )
    ctx = verify.build_context(args)
    stack, _settings = select(environment, create=False)
    key = f"{CONFIG_NAMESPACE}:{DATABASE_SUPERUSER_PASSWORD}"
    config = stack.get_all_config()
    if key not in config:
        raise RuntimeError(f"environments/stacks/Pulumi.{environment}.yaml: config.{key}: missing secret")
    return Deployed(environment, ctx, str(config[key].value))
