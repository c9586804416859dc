"""Names the program derives from the settings, checked before anything is registered.

A valid environment name, role or device class can still give a Kubernetes name the API
server refuses: ``<project>-<env>`` longer than 63 characters, a Secret ``...-role-foo-`` from
the role ``foo_``, a Job name past the 63 characters its ``job-name`` label allows. Found only
at apply time, that is a half-applied update; found here, it is a ``SettingsError`` naming the
file and key the name comes from.

The names are built with program/naming.py, with the suffixes the components use
(program/components/*); tests/unit/test_settings_rules.py checks every name of a built stack
is one of the kinds checked here, so a new suffix cannot slip past.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from smartnation.paths import project_dir
from smartnation.program import naming
from smartnation.settings.errors import SettingsError
from smartnation.settings.models import ClusterProfile, EnvironmentSpec
from smartnation.settings.validation import Origins, check_kind
from smartnation.settings.yaml_files import read_yaml

# The same environment files are deployed under other project names too: the integration tests'
# scratch projects (tests/integration: `smartnation-it`, `smartnation-delivery`). An environment
# name must give a valid namespace under the longest of them as well as under Pulumi.yaml's.
PROJECT_NAME_ROOM = len("smartnation-delivery")

ENVIRONMENT_KEY = "<environment name>"
"""Key path used for problems of the environment name itself (the file's name)."""

# A Service name is a DNS-1035 label: it must start with a letter.
_SERVICE_RE = re.compile(r"[a-z]([a-z0-9-]{0,61}[a-z0-9])?")
_LABEL_RE = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
# Stand-in for the 10 hex digits of a hashed Job name (StatefulSetChildren.hashed_name).
_HASH = "0" * 10
MIGRATE_HASH_DIGITS = 6
"""Hex digits of an API's migration Job name (``<env>-<app>-migrate-<digits>``): fewer than the
setup Jobs' 10, so ``-telemetry-ingest-migrate-`` leaves environment names the room the setup
Jobs do; they only tell one release's Job of one API from the next."""


@dataclass(frozen=True)
class Derived:
    """One name the program will give an object, what it is, its limit and where it comes from."""

    what: str
    name: str
    limit: int
    why: str
    key: tuple[str, ...]
    """Key path of the setting it is derived from; () for the environment name."""
    service: bool = False
    """A Service (DNS-1035: starts with a letter) rather than a DNS-1123 label."""


def project_name() -> str:
    """The Pulumi project name (Pulumi.yaml of the project directory), if there is one."""
    path = project_dir() / "Pulumi.yaml"
    return _project_name(path, path.stat().st_mtime_ns) if path.is_file() else ""


@functools.lru_cache(maxsize=16)
def _project_name(path: Path, _mtime: int) -> str:
    data = read_yaml(path, "Pulumi.yaml")
    name = data.get("name") if isinstance(data, dict) else None
    return name if isinstance(name, str) else ""


def derived_names(environment: str, spec: EnvironmentSpec) -> Iterator[Derived]:
    """Every object name with a limit tighter than a Secret's 253 characters, and every name
    that embeds a setting besides the environment."""
    names = naming.names
    label, statefulset = "a DNS label", "its pods' controller-revision-hash label adds 11 characters to 63"
    for role in (naming.BROKER, naming.DATABASE, naming.OBJECT_STORAGE):
        yield Derived("instance label", names(environment, role).name, 63, label, ())
    for name in (
        names(environment, naming.BROKER).name,
        names(environment, naming.OBJECT_STORAGE).name,
        names(environment, naming.DATABASE).child("primary"),
        names(environment, naming.DATABASE).child("replica"),
    ):
        yield Derived("StatefulSet", name, 52, statefulset, ())
    for role, suffixes in (
        (naming.BROKER, ("headless", "internal")),
        (naming.DATABASE, ("headless", "primary", "replicas")),
        (naming.OBJECT_STORAGE, ("headless",)),
    ):
        for suffix in suffixes:
            yield Derived("Service", names(environment, role).child(suffix), 63, label, (), service=True)
    yield Derived("Service", names(environment, naming.OBJECT_STORAGE).name, 63, label, (), service=True)
    for role, stem in ((naming.DATABASE, "init"), (naming.OBJECT_STORAGE, "setup")):
        yield Derived("Job", names(environment, role).child(f"{stem}-{_HASH}"), 63, "its job-name label", ())
    yield Derived(
        "CronJob", names(environment, naming.DATABASE).child("backup"), 52, "its Jobs' names add 11 characters", ()
    )
    for api in spec.city_apis.values():
        release = names(environment, api.app).name
        key = ("city_apis", api.name)
        yield Derived("Helm release and Service", release, 53, "Helm's limit on release names", key, service=True)
        if api.database is not None and api.database.migrations:
            job = names(environment, api.app).child(f"migrate-{_HASH[:MIGRATE_HASH_DIGITS]}")
            # Keyed like the setup Jobs, to the environment name: the API's name is bounded by its
            # release's 53 characters, and what runs out first is the environment name's room.
            yield Derived("Job", job, 63, "its job-name label", ())
    for index, device_class in enumerate(spec.broker.device_classes):
        key = ("broker", "device_classes", str(index), "name")
        yield Derived("Secret", names(environment, naming.BROKER).child(f"client-{device_class.name}"), 253, "", key)
    for index, role in enumerate(spec.database.roles):
        key = ("database", "roles", str(index), "name")
        secret = names(environment, naming.DATABASE).child(f"role-{role.name.replace('_', '-')}")
        yield Derived("Secret", secret, 253, "", key)
    for index, user in enumerate(spec.object_storage.users):
        key = ("object_storage", "users", str(index), "name")
        yield Derived("Secret", names(environment, naming.OBJECT_STORAGE).child(f"user-{user.name}"), 253, "", key)


def check_derived_names(
    environment: str, spec: EnvironmentSpec, profile: ClusterProfile, origins: Origins, profile_file: str
) -> None:
    """Raise SettingsError for the first derived name Kubernetes would refuse."""
    env_file = origins.default_file
    project = project_name()
    room = max(len(project), PROJECT_NAME_ROOM)
    namespace = f"{project or 'smartnation'}-{environment}"
    if room + 1 + len(environment) > 63:
        raise SettingsError(
            env_file,
            ENVIRONMENT_KEY,
            f"{environment!r} gives the namespace {namespace!r} ({len(namespace)} characters), and under the "
            f"{room}-character project names the tests use more; a namespace is at most 63: "
            f"use at most {62 - room} characters",
        )
    for derived in derived_names(environment, spec):
        pattern = _SERVICE_RE if derived.service else _LABEL_RE
        if derived.limit == 253:
            problem = check_kind("dns_subdomain", derived.name)
        elif len(derived.name) > derived.limit or not pattern.fullmatch(derived.name[:63]):
            start = "a letter" if derived.service else "a letter or digit"
            problem = (
                f"expected at most {derived.limit} characters ({derived.why}), lowercase letters, digits and '-', "
                f"starting with {start}"
            )
        else:
            problem = None
        if problem:
            file = origins.file_for(derived.key) if derived.key else env_file
            key = ".".join(derived.key) if derived.key else ENVIRONMENT_KEY
            raise SettingsError(
                file, key, f"gives the {derived.what} name {derived.name!r}, which Kubernetes refuses: {problem}"
            )
    base_domain = profile.ingress.base_domain
    hosts = [naming.api_hostname(api.app, environment, base_domain) for api in spec.city_apis.values()]
    for host in (*hosts, naming.mqtt_hostname(environment, base_domain)):
        problem = check_kind("hostname", host)
        if problem:
            raise SettingsError(profile_file, "ingress.base_domain", f"gives the host name {host!r}: {problem}")
