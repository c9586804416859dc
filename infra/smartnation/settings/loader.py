"""Read environments/defaults.yaml + environments/<env>.yaml and a cluster profile, strictly.

Each file is parsed once; the environment file is deep-merged over the defaults (mappings
merge key by key, anything else replaces), then converted into frozen dataclasses. Every
problem raises ``SettingsError`` naming the file the offending key came from.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from smartnation.paths import CLUSTERS_DIR, IMAGES_LOCK, environments_dir
from smartnation.settings.derived_names import check_derived_names
from smartnation.settings.errors import SettingsError
from smartnation.settings.models import ClusterProfile, EnvironmentSpec, Releases, Settings
from smartnation.settings.move import check_move_settings
from smartnation.settings.move_complete import check_move_complete
from smartnation.settings.validation import Origins, convert, display_path
from smartnation.settings.yaml_files import read_yaml

DEFAULTS_FILE = "defaults.yaml"
# Files in environments/ that are not environments: the shared defaults, the promotion
# order (owned by the ops CLI, smartnation.cli.promotion_order) and the images lock (written by
# the image build, smartnation.tooling.images.lock).
NOT_ENVIRONMENTS = frozenset({DEFAULTS_FILE, "promotion.yaml", IMAGES_LOCK})
# Blocks every environment file must state itself rather than inherit from the defaults:
# `promote staging production` copies `releases` verbatim, so a release must never be
# half in defaults.yaml; `cluster` is the one line that moves an environment between sites.
OWN_BLOCKS = ("cluster", "releases")
_NAME_RE = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")


def list_environments(root: Path | None = None) -> tuple[str, ...]:
    """Environment names that have a file (everything but defaults.yaml)."""
    directory = environments_dir(root)
    return tuple(sorted(p.stem for p in directory.glob("*.yaml") if p.name not in NOT_ENVIRONMENTS))


def list_clusters(root: Path | None = None) -> tuple[str, ...]:
    """Cluster profile names."""
    return tuple(sorted(p.stem for p in (environments_dir(root) / CLUSTERS_DIR).glob("*.yaml")))


def _profile_path(name: str, directory: Path) -> Path:
    return directory / CLUSTERS_DIR / f"{name}.yaml"


def load_cluster_profile(name: str, root: Path | None = None) -> ClusterProfile:
    """Parse and validate environments/clusters/<name>.yaml."""
    directory = environments_dir(root)
    path = _profile_path(name, directory)
    shown = display_path(path, directory)
    if not _NAME_RE.fullmatch(name) or not path.is_file():
        known = ", ".join(list_clusters(directory)) or "none"
        raise SettingsError(shown, "<file>", f"no such cluster profile; known profiles: {known}")
    return read_cluster_profile(path, shown)


def read_cluster_profile(path: Path, shown: str | None = None) -> ClusterProfile:
    """Parse and validate the cluster profile in ``path``, whose ``name`` must be its file name.

    ``shown`` is how messages name the file; the path itself by default.
    """
    shown = shown or str(path)
    profile = convert(ClusterProfile, read_yaml(path, shown), (), Origins(shown))
    if profile.name != path.stem:
        raise SettingsError(shown, "name", f"expected {path.stem!r} (the file name), got {profile.name!r}")
    _check_real_node_environments(profile, path, shown)
    return profile


def _check_real_node_environments(profile: ClusterProfile, path: Path, shown: str) -> None:
    """A name the local section puts on the real nodes must be an environment, and there must be
    real nodes: otherwise its Pods would wait for nodes that never come (or a typo would leave an
    environment on the simulated pools, where nothing it does is proven)."""
    local = profile.simulation
    if local is None or not local.real_node_environments:
        return
    key = "simulation.real_node_environments"
    if local.real_nodes == 0:
        raise SettingsError(shown, key, "names environments for the real nodes, but simulation.real_nodes is 0")
    environments_root = path.parent.parent  # environments/clusters/<profile>.yaml
    if (environments_root / DEFAULTS_FILE).exists():
        known = list_environments(environments_root)
        unknown = [name for name in local.real_node_environments if name not in known]
        if unknown:
            raise SettingsError(
                shown, key, f"{', '.join(unknown)}: no such environment; known environments: {', '.join(known)}"
            )


def load_settings(environment: str, root: Path | None = None) -> Settings:
    """Validated settings of one environment, with its cluster profile attached."""
    directory = environments_dir(root)
    env_path = directory / f"{environment}.yaml"
    env_shown = display_path(env_path, directory)
    if f"{environment}.yaml" in NOT_ENVIRONMENTS or not _NAME_RE.fullmatch(environment):
        raise SettingsError(env_shown, "<file>", f"{environment!r} is not an environment name")
    if not env_path.is_file():
        known = ", ".join(list_environments(directory)) or "none"
        raise SettingsError(env_shown, "<file>", f"no such environment file; known environments: {known}")

    defaults_path = directory / DEFAULTS_FILE
    defaults_shown = display_path(defaults_path, directory)
    defaults = read_yaml(defaults_path, defaults_shown) if defaults_path.is_file() else {}
    overrides = read_yaml(env_path, env_shown)
    for name, data, shown in ((DEFAULTS_FILE, defaults, defaults_shown), (env_path.name, overrides, env_shown)):
        if not isinstance(data, Mapping):
            raise SettingsError(shown, "<top level>", f"expected a mapping of settings in {name}")
    for key in OWN_BLOCKS:
        if key in defaults:
            raise SettingsError(defaults_shown, key, "must not be in the defaults; each environment file states it")
        if key not in overrides:
            raise SettingsError(env_shown, key, "required key is missing (every environment file states it in full)")

    def missing_file(path: tuple[str, ...]) -> str:
        # Environment files hold only differences, so a key missing from a block belongs in the
        # defaults; but a list is stated whole by one file (items are not merged), and `cluster`
        # and `releases` are stated in full by every environment file.
        if any(part.isdigit() for part in path[:-1]):  # inside a list item
            return origins.file_for(path)
        if path[0] in OWN_BLOCKS or not defaults_path.is_file():
            return env_shown
        return defaults_shown

    origins = Origins(env_shown, missing_file)
    merged = _merge(defaults, overrides, (), origins, defaults_shown, env_shown)
    spec = convert(EnvironmentSpec, merged, (), origins)
    _check_references(spec, origins)
    releases = _with_digests(spec.releases, overrides, env_shown, directory)

    if spec.cluster not in list_clusters(directory):
        known = ", ".join(list_clusters(directory)) or "none"
        raise SettingsError(
            env_shown,
            "cluster",
            f"expected one of the cluster profiles in {CLUSTERS_DIR}/ ({known}), got {spec.cluster!r}",
        )
    check_move_settings(spec, defaults, defaults_shown, env_shown, list_clusters(directory), CLUSTERS_DIR)
    check_move_complete(spec, defaults, defaults_shown, env_shown)
    profile = load_cluster_profile(spec.cluster, directory)
    # Names the program derives (namespace, Services, Secrets, Jobs, hostnames) are checked
    # here too, so that no resource is registered with a name the cluster would refuse.
    check_derived_names(
        environment, spec, profile, origins, display_path(_profile_path(spec.cluster, directory), directory)
    )
    return Settings(
        environment=environment,
        source=env_shown,
        cluster=profile,
        releases=releases,
        broker=spec.broker,
        database=spec.database,
        object_storage=spec.object_storage,
        city_apis=spec.city_apis,
        guardrails=spec.guardrails,
        verify=spec.verify,
        move=spec.move,
        move_complete=spec.move_complete,
    )


def _with_digests(releases: Releases, stated: Mapping[str, Any], env_shown: str, directory: Path) -> Releases:
    """``releases`` with each component's digest from environments/images.lock.yaml.

    The digest a release deploys comes from the image build, never from an environment file:
    a file that states one is refused, and a repository:tag the lock does not list (an image
    nobody built here) is refused before anything is registered."""
    # Imported here: the lock's one reader lives with the build that writes it.
    from smartnation.tooling.images.lock import image_key, read_lock

    lock_path = directory / IMAGES_LOCK
    lock_shown = display_path(lock_path, directory)
    lock = read_lock(lock_path, lock_shown)
    # Both keys are there: `releases` is one of OWN_BLOCKS and convert required its components.
    components = stated["releases"]["components"]
    resolved = {}
    for name, release in releases.components.items():
        key = f"releases.components.{name}"
        if isinstance(components.get(name), Mapping) and "digest" in components[name]:
            raise SettingsError(
                env_shown, f"{key}.digest", f"never written by hand: the loader reads it from {lock_shown}"
            )
        digest = lock.get(image_key(release.repository, release.tag))
        if digest is None:
            raise SettingsError(
                env_shown,
                key,
                f"{image_key(release.repository, release.tag)} is not in {lock_shown}: no image of that "
                "repository and tag was built here. `make images` builds what the lock lists (images.yaml "
                f"pins it); release one of: {', '.join(sorted(lock))}",
            )
        resolved[name] = dataclasses.replace(release, digest=digest)
    return dataclasses.replace(releases, components=MappingProxyType(resolved))


def _merge(
    base: Any, override: Any, path: tuple[str, ...], origins: Origins, base_file: str, override_file: str
) -> Any:
    if isinstance(base, Mapping) and isinstance(override, Mapping):
        merged = {}
        # A mapping both files touch is blamed on the environment file: a cross-field error
        # there (limits below requests) comes from what the environment changed.
        origins.record(path, override_file if override else base_file)

        for key in {**base, **override}:
            sub = (*path, str(key))
            if key in override and key in base:
                merged[key] = _merge(base[key], override[key], sub, origins, base_file, override_file)
            elif key in override:
                merged[key] = override[key]
                origins.record(sub, override_file)
            else:
                merged[key] = base[key]
                origins.record(sub, base_file)
        return merged
    origins.record(path, override_file)
    return override


def _check_references(spec: EnvironmentSpec, origins: Origins) -> None:
    """References between blocks: every name an API or the backup uses must exist."""

    def fail(path: tuple[str, ...], message: str) -> None:
        raise SettingsError(origins.file_for(path), ".".join(path), message)

    internal_classes = {c.name for c in spec.broker.device_classes if c.internal}
    roles = {r.name for r in spec.database.roles}
    logins = {r.name for r in spec.database.roles if r.login}
    databases = {d.name: d for d in spec.database.databases}
    users = {u.name: u for u in spec.object_storage.users}
    buckets = {b.name for b in spec.object_storage.buckets}

    for name, api in spec.city_apis.items():
        path = ("city_apis", name)
        if name not in spec.releases.components:
            release = ("releases", "components", name)
            fail(
                release,
                f"required key is missing: city_apis.{name} (in {origins.file_for(path)}) deploys this API, and "
                "its image comes from its release here (version, repository, tag)",
            )
        if api.broker_client is not None and api.broker_client not in internal_classes:
            fail(
                (*path, "broker_client"),
                f"expected one of the internal broker.device_classes ({', '.join(sorted(internal_classes))}): "
                "an API logs in with its class's password on the in-cluster listener",
            )
        if api.broker_all_pods and api.broker_client is None:
            fail((*path, "broker_all_pods"), "needs broker_client to be set")
        if api.storage_user is not None and api.storage_user not in users:
            fail((*path, "storage_user"), f"expected one of object_storage.users ({', '.join(sorted(users))})")
        if api.database is not None:
            if api.database.name not in databases:
                fail((*path, "database", "name"), f"expected one of database.databases ({', '.join(databases)})")
            if api.database.role not in roles:
                fail((*path, "database", "role"), f"expected one of database.roles ({', '.join(sorted(roles))})")
            if api.database.role not in logins:
                fail((*path, "database", "role"), "the role cannot log in (login: false in database.roles)")
            owner = databases[api.database.name].owner
            if owner == api.database.role:
                # Least privilege: the owner may DROP and ALTER; only the migration Job logs in as it.
                fail(
                    (*path, "database", "role"),
                    f"the role owns database {api.database.name!r}; an API connects as a role with a grant "
                    "(write or read) and the owner runs its migrations only (migrations: true)",
                )
            granted = any(g.role == api.database.role and g.database == api.database.name for g in spec.database.grants)
            if not granted:
                fail((*path, "database", "role"), f"role has no grant on database {api.database.name!r}")
            if api.database.migrations and owner not in logins:
                fail(
                    (*path, "database", "migrations"),
                    f"the migration Job logs in as the owner of {api.database.name!r}, {owner!r}, which cannot log in",
                )

    backup = spec.database.backup
    if backup.bucket not in buckets:
        fail(("database", "backup", "bucket"), f"expected one of object_storage.buckets ({', '.join(sorted(buckets))})")
    user = users.get(backup.storage_user)
    if user is None or user.access != "readwrite" or backup.bucket not in user.buckets:
        fail(
            ("database", "backup", "storage_user"),
            f"expected an object_storage user with readwrite access to {backup.bucket!r}",
        )
