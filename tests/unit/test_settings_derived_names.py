"""The derived names the settings check (derived_names.py) are the names the program really gives,
each with the limit of what it names.

`make mutation` showed that a derived name could change (a suffix, a limit) with no settings test
failing: the length checks would then guard names nobody creates. Here every name the check lists
is found among the objects of a built stack, of the kind it claims, and each kind's limit is pinned.
"""

from __future__ import annotations

import pytest

from smartnation.settings import load_settings
from smartnation.settings.derived_names import derived_names

pytestmark = pytest.mark.unit

KINDS = {
    "StatefulSet": "kubernetes:apps/v1:StatefulSet",
    "Service": "kubernetes:core/v1:Service",
    "CronJob": "kubernetes:batch/v1:CronJob",
    "Secret": "kubernetes:core/v1:Secret",
}
LIMITS = {
    "instance label": 63,
    "StatefulSet": 52,
    "Service": 63,
    "Job": 63,
    "CronJob": 52,
    "Helm release and Service": 53,
    "Secret": 253,
}


def test_every_derived_name_is_an_object_of_the_stack_with_its_kinds_limit(build_stack) -> None:
    built = build_stack("staging")
    spec = load_settings("staging")  # Settings carries the fields derived_names reads from the spec
    names = {
        kind: {(r.inputs.get("metadata") or {}).get("name") for r in built.of_type(t)} for kind, t in KINDS.items()
    }
    releases = {r.inputs.get("name") for r in built.of_type("kubernetes:helm.sh/v4:Chart")}
    derived = list(derived_names(spec.environment, spec))
    assert derived, "derived_names listed nothing"
    seen = set()
    for d in derived:
        seen.add(d.what)
        assert d.limit == LIMITS[d.what], d
        assert d.service is (d.what in ("Service", "Helm release and Service")), d
        if d.key[:2] == ("broker", "device_classes") and not spec.broker.device_classes[int(d.key[2])].internal:
            # Devices use certificates: their class's client Secret is only ever made for internal
            # clients, so for a device class the check guards a name nothing creates (harmless).
            continue
        if d.what in KINDS:
            assert d.name in names[d.what], f"{d.what} {d.name} is not in the stack: {sorted(names[d.what])}"
        elif d.what == "Helm release and Service":
            assert d.name in releases, f"release {d.name} not in {sorted(releases)}"
    assert seen == set(LIMITS)


def test_names_from_a_setting_name_their_key(build_stack) -> None:
    spec = load_settings("staging")  # Settings carries the fields derived_names reads from the spec
    derived = list(derived_names(spec.environment, spec))
    keyed = {d.key for d in derived if d.key}
    for index, _ in enumerate(spec.broker.device_classes):
        assert ("broker", "device_classes", str(index), "name") in keyed
    for index, _ in enumerate(spec.database.roles):
        assert ("database", "roles", str(index), "name") in keyed
    for index, _ in enumerate(spec.object_storage.users):
        assert ("object_storage", "users", str(index), "name") in keyed
    for name in spec.city_apis:
        assert ("city_apis", name) in keyed
    assert all(d.key == () for d in derived if d.what in ("instance label", "StatefulSet", "Service", "Job", "CronJob"))


WHY = {
    "instance label": "a DNS label",
    "StatefulSet": "its pods' controller-revision-hash label adds 11 characters to 63",
    "Service": "a DNS label",
    "Job": "its job-name label",
    "CronJob": "its Jobs' names add 11 characters",
    "Helm release and Service": "Helm's limit on release names",
    "Secret": "",  # its rule (a DNS subdomain) says why itself
}


def test_each_limit_comes_with_the_reason_the_error_gives() -> None:
    """What an operator reads next to "expected at most N characters": the reason of each limit."""
    spec = load_settings("staging")
    derived = list(derived_names(spec.environment, spec))
    assert {(d.what, d.why) for d in derived} == set(WHY.items())


def test_the_environment_name_may_be_as_long_as_the_namespace_allows_and_no_longer() -> None:
    """At the longest the namespace allows under the tests' longest project name, the name passes
    that check (what fails then is the first derived name past its own limit); one longer fails it."""
    from smartnation.settings import load_cluster_profile
    from smartnation.settings.derived_names import ENVIRONMENT_KEY, PROJECT_NAME_ROOM, check_derived_names
    from smartnation.settings.errors import SettingsError
    from smartnation.settings.validation import Origins

    spec = load_settings("staging")
    profile = load_cluster_profile("dusseldorf-test")
    room = max(len("smartnation"), PROJECT_NAME_ROOM)
    longest = "e" * (62 - room)
    for name, namespace_refused in ((longest, False), (longest + "e", True)):
        with pytest.raises(SettingsError) as refused:
            check_derived_names(name, spec, profile, Origins("environments/x.yaml"), "environments/clusters/p.yaml")
        if namespace_refused:
            assert refused.value.key_path == ENVIRONMENT_KEY
            assert refused.value.detail == (
                f"{name!r} gives the namespace 'smartnation-{name}' ({len(name) + 12} characters), and under the "
                f"{room}-character project names the tests use more; a namespace is at most 63: "
                f"use at most {62 - room} characters"
            )
        else:
            assert refused.value.key_path == ENVIRONMENT_KEY
            assert refused.value.detail.startswith(f"gives the StatefulSet name '{name}-")
            assert "expected at most 52 characters (its pods' controller-revision-hash label" in refused.value.detail
            assert refused.value.detail.endswith("starting with a letter or digit")  # not a Service: digits may lead


def test_an_api_without_migrations_has_no_migration_job_to_check() -> None:
    spec = load_settings("staging")
    jobs = {d.name for d in derived_names(spec.environment, spec) if d.what == "Job" and "-migrate-" in d.name}
    migrating = {name for name, api in spec.city_apis.items() if api.database is not None and api.database.migrations}
    assert migrating and len(migrating) < len(spec.city_apis)  # both kinds present in staging
    assert jobs == {f"staging-{spec.city_apis[name].app}-migrate-000000" for name in migrating}


def test_a_secret_name_may_run_past_63_characters(envdir) -> None:
    """A Secret's name is a DNS subdomain (253), not a label: a long object storage user's Secret
    loads even where its first 63 characters end in '-', which a label would refuse."""
    import yaml

    from smartnation.program import naming
    from tests.unit.harness import edit

    prefix = naming.names("dev", naming.OBJECT_STORAGE).child("user-")
    user = "u" * (62 - len(prefix)) + "-" + "u" * 10  # the Secret name's 63rd character is this '-'
    secret = naming.names("dev", naming.OBJECT_STORAGE).child(f"user-{user}")
    assert len(secret) > 63 and secret[62] == "-"
    users = yaml.safe_load((envdir / "defaults.yaml").read_text())["object_storage"]["users"]
    edit(
        envdir,
        "defaults.yaml",
        "object_storage.users",
        [*users, {"name": user, "buckets": ["backups"], "access": "read"}],
    )
    spec = load_settings("dev", envdir)
    assert secret in {d.name for d in derived_names("dev", spec) if d.what == "Secret"}
