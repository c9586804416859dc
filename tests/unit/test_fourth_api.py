"""The set of city APIs is data: a fourth API is one entry in an environment file plus its release.

``tests/added_api.py`` adds ``street_lighting`` to a scratch copy of environments/ (dev.yaml: its
settings under ``city_apis`` and its release under ``releases.components``, the open-data API's
image); the program, unchanged, then registers a fourth chart release with everything an API gets,
and nothing else changes. Expected values come from the added entry and the settings, never from
literals copied out of the components.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from smartnation.cli.mock_program import records, render
from smartnation.program import naming
from smartnation.settings import SettingsError, load_settings
from smartnation.settings.footprint import needs
from smartnation.settings.models import PLATFORM_COMPONENTS
from smartnation.settings.validation import parse_quantity
from smartnation.tooling.images.lock import image_key, read_lock
from tests.added_api import APP, IMAGE_OF, NAME, SETTINGS, add_api, release_of
from tests.unit.harness import BuiltStack, build_settings, edit

pytestmark = pytest.mark.unit

ENVIRONMENT = "dev"
CHART = "kubernetes:helm.sh/v4:Chart"
CONFIGMAP = "kubernetes:core/v1:ConfigMap"
SECRET = "kubernetes:core/v1:Secret"
CERTIFICATE = "kubernetes:cert-manager.io/v1:Certificate"
NETPOL = "kubernetes:networking.k8s.io/v1:NetworkPolicy"


def _build(root: Path) -> BuiltStack:
    return build_settings(load_settings(ENVIRONMENT, root))


@pytest.fixture
def added(envdir: Path) -> Path:
    add_api(envdir, ENVIRONMENT)
    return envdir


@pytest.fixture
def stack(added: Path) -> BuiltStack:
    return _build(added)


def _chart(stack: BuiltStack, app: str) -> dict[str, Any]:
    (chart,) = [r.plain for r in stack.of_type(CHART) if r.plain["values"]["component"] == app]
    return chart


def _named(stack: BuiltStack, type_: str, name: str) -> dict[str, Any]:
    (found,) = [r.plain for r in stack.of_type(type_) if r.plain["metadata"]["name"] == name]
    return found


def test_the_added_api_is_a_fourth_chart_release_running_the_released_image(envdir: Path, stack: BuiltStack) -> None:
    assert list(stack.settings.city_apis)[-1] == NAME
    charts = stack.of_type(CHART)
    assert len(charts) == len(stack.settings.city_apis) == 4
    chart = _chart(stack, APP)
    assert chart["name"] == naming.names(ENVIRONMENT, APP).name
    release = release_of(envdir, ENVIRONMENT, IMAGE_OF)
    digest = read_lock(envdir / "images.lock.yaml")[image_key(release["repository"], release["tag"])]
    image = chart["values"]["image"]
    assert image["repository"].endswith(f"/{release['repository']}") and image["tag"] == release["tag"]
    assert image["digest"] == digest == stack.settings.releases.components[NAME].digest
    values = chart["values"]
    assert values["autoscaling"]["minReplicas"] == SETTINGS["replicas"]
    assert values["autoscaling"]["maxReplicas"] == SETTINGS["max_replicas"]
    assert values["resources"]["requests"] == SETTINGS["resources"]["requests"]
    assert {"name": "OPEN_DATA_MAX_POINTS", "value": "500"} in values["extraEnv"]
    outputs = stack.outputs
    assert APP in outputs["api_urls"][0] and APP in outputs["deployed_releases"][0]["helm_releases"]
    assert outputs["deployed_releases"][0][NAME]["image"].endswith(f"@{digest}")


def test_it_gets_its_connections_configmap_and_credentials_by_reference(stack: BuiltStack) -> None:
    values = _chart(stack, APP)["values"]
    (config_map_name,) = values["envFromConfigMaps"]
    config_map = _named(stack, CONFIGMAP, config_map_name)
    assert config_map_name == naming.names(ENVIRONMENT, APP).child("connections")
    data = config_map["data"]
    assert data["PGDATABASE"] == SETTINGS["database"]["name"] and "S3_ENDPOINT" in data
    assert "MQTT_URL" not in data, "no broker_client: no broker connection"
    # The role's and the storage user's Secrets: the same the open-data API reads.
    role = naming.names(ENVIRONMENT, naming.DATABASE).child(f"role-{SETTINGS['database']['role'].replace('_', '-')}")
    user = naming.names(ENVIRONMENT, naming.OBJECT_STORAGE).child(f"user-{SETTINGS['storage_user']}")
    assert sorted(values["envFromSecrets"]) == sorted([role, user])
    for secret in values["envFromSecrets"]:
        _named(stack, SECRET, secret)


def test_it_gets_a_certificate_for_its_host_from_the_profiles_issuer(stack: BuiltStack) -> None:
    ingress = _chart(stack, APP)["values"]["ingress"]
    assert ingress["host"] == naming.api_hostname(APP, ENVIRONMENT, stack.settings.cluster.ingress.base_domain)
    (certificate,) = [
        r.plain for r in stack.of_type(CERTIFICATE) if r.plain["spec"]["secretName"] == ingress["tlsSecretName"]
    ]
    assert certificate["spec"]["dnsNames"] == [ingress["host"]]
    assert certificate["spec"]["issuerRef"]["name"] == stack.settings.cluster.ingress.tls_issuer
    assert f"https://{ingress['host']}" == stack.outputs["api_urls"][0][APP]


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    return dict(selector.get("matchLabels") or {}).items() <= labels.items()


def _coverage(policies: list[dict[str, Any]], labels: dict[str, str]) -> list[tuple[bool, bool]]:
    """Per policy: (selects pods with ``labels``, admits traffic from them)."""
    return [
        (
            _selects(p["podSelector"], labels),
            any(
                "podSelector" in peer and _selects(peer["podSelector"], labels)
                for rule in p.get("ingress", [])
                for peer in rule.get("from", [])
            ),
        )
        for p in policies
    ]


def test_the_network_policies_treat_it_as_a_city_api(stack: BuiltStack) -> None:
    """Its pods carry the tier label, so every policy that selects the APIs (ingress controller in;
    database, broker, storage out) or admits them (the database's, the broker's and the storage's
    own ingress) covers it exactly as it covers the open-data API."""
    added = _chart(stack, APP)["values"]["podLabels"]
    assert added[naming.TIER_LABEL] == naming.API_TIER
    policies = [r.plain["spec"] for r in stack.of_type(NETPOL)]
    coverage = _coverage(policies, added)
    assert any(selects for selects, _ in coverage) and any(admits for _, admits in coverage)
    assert coverage == _coverage(policies, _chart(stack, IMAGE_OF.replace("_", "-"))["values"]["podLabels"])


def test_quota_accounting_counts_it_at_its_hpa_ceiling(envdir: Path) -> None:
    without = needs(load_settings(ENVIRONMENT, envdir))
    add_api(envdir, ENVIRONMENT)
    with_it = needs(load_settings(ENVIRONMENT, envdir))
    ceiling = SETTINGS["max_replicas"]
    assert with_it["pods"].amount - without["pods"].amount == ceiling
    for field, (section, kind) in {
        "requests_cpu": ("requests", "cpu"),
        "requests_memory": ("requests", "memory"),
        "limits_cpu": ("limits", "cpu"),
        "limits_memory": ("limits", "memory"),
    }.items():
        added = ceiling * parse_quantity(SETTINGS["resources"][section][kind])
        assert with_it[field].amount - without[field].amount == pytest.approx(added), field
        assert f"{NAME} {ceiling}x" in with_it[field].detail
    # A quota that held the three APIs exactly refuses the fourth, naming it.
    edit(envdir, f"{ENVIRONMENT}.yaml", "guardrails.quota.pods", int(without["pods"].amount))
    with pytest.raises(SettingsError) as caught:
        load_settings(ENVIRONMENT, envdir)
    assert (caught.value.file, caught.value.key_path) == (f"environments/{ENVIRONMENT}.yaml", "guardrails.quota.pods")
    assert f"{NAME} {ceiling}x1" in caught.value.detail


def test_nothing_else_changes(envdir: Path, tmp_path: Path) -> None:
    """Every registration of the environment without the API is there, identical, with it: the
    API adds its own resources and changes no other (the component's outputs aside)."""
    before = {r["urn"]: r for r in records(render(ENVIRONMENT, envdir))}
    add_api(envdir, ENVIRONMENT)
    after = {r["urn"]: r for r in records(render(ENVIRONMENT, envdir))}
    assert set(before) <= set(after)
    assert [urn for urn in before if before[urn] != after[urn]] == []
    added = sorted(set(after) - set(before))
    assert added and all(APP in urn.rsplit("::", 1)[-1] for urn in added), added


# --- Names and releases: refused up front, naming the file and the key ----------------------


def _refused(envdir: Path, environment: str = ENVIRONMENT) -> SettingsError:
    with pytest.raises(SettingsError) as caught:
        load_settings(environment, envdir)
    return caught.value


def test_an_api_without_its_release_is_refused_naming_the_environment_file_and_release(envdir: Path) -> None:
    add_api(envdir, ENVIRONMENT, release=False)
    error = _refused(envdir)
    assert (error.file, error.key_path) == (f"environments/{ENVIRONMENT}.yaml", f"releases.components.{NAME}")
    assert f"city_apis.{NAME}" in error.detail


def test_an_api_added_in_the_defaults_needs_its_release_in_every_environment_file(envdir: Path) -> None:
    edit(envdir, "defaults.yaml", f"city_apis.{NAME}", SETTINGS)
    edit(envdir, "dev.yaml", f"releases.components.{NAME}", release_of(envdir, "dev"))
    load_settings("dev", envdir)
    error = _refused(envdir, "staging")
    assert (error.file, error.key_path) == ("environments/staging.yaml", f"releases.components.{NAME}")
    assert "environments/defaults.yaml" in error.detail


def test_a_release_no_api_uses_is_accepted_so_promotion_can_carry_it(envdir: Path) -> None:
    # dev releases street_lighting; promoting dev's releases to staging copies that release into
    # staging.yaml before staging enables the API: staging must still load, and deploy no more.
    edit(envdir, "staging.yaml", f"releases.components.{NAME}", release_of(envdir, "staging"))
    settings = load_settings("staging", envdir)
    assert NAME in settings.releases.components and NAME not in settings.city_apis
    from smartnation.program.city_platform import release_summary

    assert NAME not in release_summary(settings)


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("Street_Lighting", "component name"),
        ("street-lighting", "component name"),
        ("1lighting", "component name"),
        ("lighting_", "component name"),
        ("broker", "platform component"),
        ("object_storage_client", "platform component"),
        ("database_tools", "platform component"),
    ],
)
def test_a_bad_api_name_is_refused_naming_its_key(envdir: Path, name: str, words: str) -> None:
    add_api(envdir, ENVIRONMENT, name=name, release=False)
    error = _refused(envdir)
    assert (error.file, error.key_path) == (f"environments/{ENVIRONMENT}.yaml", f"city_apis.{name}"), str(error)
    assert words in error.detail, str(error)


def test_an_api_name_too_long_for_its_helm_release_is_refused_naming_its_key(envdir: Path) -> None:
    name = "street_lighting_" + "x" * 40  # a valid key; dev-street-lighting-xxx... is past 53
    add_api(envdir, ENVIRONMENT, name=name)
    error = _refused(envdir)
    assert (error.file, error.key_path) == (f"environments/{ENVIRONMENT}.yaml", f"city_apis.{name}")
    assert "Helm" in error.detail


def test_the_platform_components_are_the_programs_roles() -> None:
    """An API may not take a platform component's name (PLATFORM_COMPONENTS): they must be the
    roles the program names its objects after, or the rule protects the wrong names."""
    roles = {naming.BROKER, naming.DATABASE, naming.OBJECT_STORAGE}
    assert {c.replace("_", "-") for c in PLATFORM_COMPONENTS} - {"object-storage-client"} == roles
    raw = yaml.safe_load((Path(__file__).resolve().parents[2] / "environments" / "dev.yaml").read_text())
    assert set(PLATFORM_COMPONENTS) <= set(raw["releases"]["components"])
