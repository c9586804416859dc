"""Each guardrail's whole message, word for word, and the branches the other policy tests leave out.

An operator reads these messages in a failed preview at 3 a.m.: they are part of the product, so
they are compared whole here (a word lost from the advice is a defect). The inputs also reach the
branches that test_policy.py and test_policy_hardening.py do not: a later container after one
that is skipped, a value of the wrong type, a budget or workload whose namespace comes from its
provider, a boundary replica count. Each test is aimed at a survivor of the mutation run on
rules.py (BENCHMARKS.md, issue 12): the expected texts are written out, not built by the code
under test.
"""

from __future__ import annotations

from typing import Any

import pytest
from pulumi_policy import PolicyResource
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, unknown_checking_proxy

from smartnation_policy import plaintext, rules
from smartnation_policy.plaintext import is_literal
from smartnation_policy.workloads import (
    ImageReference,
    containers,
    dig,
    items,
    kind_of,
    namespace_of,
    parse_image,
    pod_spec,
)
from tests.unit.test_policy import (
    DEPLOYMENT,
    MIRROR,
    NAMESPACE,
    NETPOL,
    PDB,
    STATEFULSET,
    ZONE,
    check,
    container,
    deployment,
    namespace,
    network_policy,
    options,
    pod,
    resource_args,
    stack_args,
    stack_resource,
    target_config,
    urn_of,
    workload,
)
from tests.unit.test_policy_hardening import CONFIG_MAP, PV, deployment_args, netpol_args, with_context

pytestmark = pytest.mark.unit

HOST = "kubernetes.io/hostname"


def messages(validator: Any, args: Any) -> list[str]:
    return check(validator, args).messages


# --- no-latest-image ----------------------------------------------------------------------------


def test_no_latest_image_names_every_unpinned_container_in_order_past_skipped_ones():
    """A container with no image, or pinned by digest, is done with; the ones after it are still read."""
    nameless = container("b")
    del nameless["image"]
    spec = pod(
        container("a", image=""),
        nameless,
        container("c", image=f"{MIRROR}/api@sha256:{'a' * 64}"),
        container("d", image=f"{MIRROR}/api:latest"),
        container("e", image=f"{MIRROR}/api"),
        container("f", image=f"{MIRROR}/api:1.4.2"),
        container("g", image=7),
    )
    assert messages(rules.no_latest_image_validator, deployment_args(spec)) == [
        "Deployment 'api': container 'a' has no image.",
        "Deployment 'api': container 'b' has no image.",
        "Deployment 'api': container 'd' image 'registry.smartnation.mc/mirror/api:latest' uses the ':latest' tag; "
        "pin a version tag or a digest.",
        "Deployment 'api': container 'e' image 'registry.smartnation.mc/mirror/api' has no tag, which pulls "
        "':latest'; pin a version tag or a digest.",
        "Deployment 'api': container 'g' has no image.",
    ]


def test_no_latest_image_ignores_resources_without_pods():
    assert messages(rules.no_latest_image_validator, resource_args(NAMESPACE, {"metadata": {"name": "x"}})) == []


# --- read-only-root-filesystem ------------------------------------------------------------------


def test_read_only_root_filesystem_takes_only_the_boolean_true_and_names_each_container():
    spec = pod(
        with_context("text", readOnlyRootFilesystem="true"),
        with_context("one", readOnlyRootFilesystem=1),
        with_context("fine", readOnlyRootFilesystem=True),
        init=[with_context("migrate", readOnlyRootFilesystem=False)],
    )
    advice = (
        " has a writable root filesystem; set securityContext.readOnlyRootFilesystem: true and mount an "
        "emptyDir or a claim where it writes."
    )
    assert messages(rules.read_only_root_filesystem_validator, deployment_args(spec)) == [
        f"Deployment 'api': init container 'migrate'{advice}",
        f"Deployment 'api': container 'text'{advice}",
        f"Deployment 'api': container 'one'{advice}",
    ]


def test_read_only_root_filesystem_ignores_resources_without_pods():
    args = resource_args(NAMESPACE, {"metadata": {"name": "x"}})
    assert messages(rules.read_only_root_filesystem_validator, args) == []


# --- namespace-pod-security ---------------------------------------------------------------------

WANTED = (
    "label it 'pod-security.kubernetes.io/enforce: restricted', 'pod-security.kubernetes.io/audit: restricted', "
    "'pod-security.kubernetes.io/warn: restricted' so the API server enforces the restricted profile and "
    "reports what breaks it."
)


@pytest.mark.parametrize(
    ("labels", "problems"),
    [
        (
            {"pod-security.kubernetes.io/enforce": "baseline", "pod-security.kubernetes.io/warn": "restricted"},
            "'pod-security.kubernetes.io/enforce: baseline', no 'pod-security.kubernetes.io/audit' label",
        ),
        (
            # An empty level is no level: said as a missing label, not as "enforce: ".
            {
                "pod-security.kubernetes.io/enforce": "",
                "pod-security.kubernetes.io/audit": "restricted",
                "pod-security.kubernetes.io/warn": "privileged",
            },
            "no 'pod-security.kubernetes.io/enforce' label, 'pod-security.kubernetes.io/warn: privileged'",
        ),
        (
            # Labels that are not a mapping are no labels, not a crash.
            ["pod-security.kubernetes.io/enforce=restricted"],
            "no 'pod-security.kubernetes.io/enforce' label, no 'pod-security.kubernetes.io/audit' label, "
            "no 'pod-security.kubernetes.io/warn' label",
        ),
    ],
    ids=["wrong-and-missing", "empty-level", "labels-not-a-mapping"],
)
def test_namespace_pod_security_says_every_problem_and_the_labels_to_set(labels, problems):
    args = resource_args(NAMESPACE, {"metadata": {"name": "smartnation-dev", "labels": labels}}, name="ns")
    assert messages(rules.namespace_pod_security_validator, args) == [f"Namespace 'ns' has {problems}; {WANTED}"]


# --- retain-production-claims -------------------------------------------------------------------


def production(resource_type: str, props: dict[str, Any], environment: str = "production"):
    return resource_args(resource_type, props, name="postgres", config=target_config(environment), protect=True)


def test_retain_production_claims_says_each_deleting_policy_and_the_fix():
    props = workload(STATEFULSET, pod())
    props["spec"]["persistentVolumeClaimRetentionPolicy"] = {"whenDeleted": "Delete", "whenScaled": "Delete"}
    assert messages(rules.retain_production_claims_validator, production(STATEFULSET, props)) == [
        "StatefulSet 'postgres' deletes its production claims (persistentVolumeClaimRetentionPolicy "
        "whenDeleted: Delete, whenScaled: Delete); set both to Retain (the default)."
    ]


def test_retain_production_claims_says_what_a_deleting_volume_holds():
    props = {"spec": {"persistentVolumeReclaimPolicy": "Delete"}}
    assert messages(rules.retain_production_claims_validator, production(PV, props)) == [
        "PersistentVolume 'postgres' holds production data with persistentVolumeReclaimPolicy Delete; set it to Retain."
    ]


@pytest.mark.parametrize(
    ("resource_type", "props", "environment"),
    [
        (PV, {"spec": {"persistentVolumeReclaimPolicy": "Retain"}}, "production"),
        (PV, {"spec": {"persistentVolumeReclaimPolicy": "Delete"}}, "staging"),
        # Only StatefulSets and volumes are judged: a Deployment has no claims of its own.
        (
            DEPLOYMENT,
            {"spec": {"persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Delete"}}},
            "production",
        ),
    ],
    ids=["retained-volume", "staging-volume", "not-a-volume-owner"],
)
def test_retain_production_claims_leaves_retained_volumes_other_environments_and_other_kinds(
    resource_type, props, environment
):
    assert messages(rules.retain_production_claims_validator, production(resource_type, props, environment)) == []


# --- no-allow-all-network-policy ----------------------------------------------------------------

ALLOW_ALL_ADVICE = "name the pods, namespaces or address ranges and the ports it needs."


def test_no_allow_all_network_policy_names_each_open_rule_by_direction_and_index():
    spec = {
        "ingress": [
            {"from": [{"podSelector": {"matchLabels": {"app": "api"}}}]},
            "not-a-rule",
            {"from": [{"namespaceSelector": {}, "podSelector": {}}]},
            {"ports": []},
        ],
        "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": []}}]}],
    }
    assert messages(rules.no_allow_all_network_policy_validator, netpol_args(**spec)) == [
        "NetworkPolicy 'api-policy': ingress[2] allows all traffic (no ports and a from peer that matches "
        f"everything); {ALLOW_ALL_ADVICE}",
        f"NetworkPolicy 'api-policy': ingress[3] allows all traffic (no ports and no from); {ALLOW_ALL_ADVICE}",
        "NetworkPolicy 'api-policy': egress[0] allows all traffic (no ports and a to peer that matches "
        f"everything); {ALLOW_ALL_ADVICE}",
    ]


@pytest.mark.parametrize(
    "peer",
    [
        "not-a-peer",
        {"ipBlock": {"cidr": "10.0.0.0/8"}},
        {"ipBlock": {"cidr": "::/0", "except": ["fd00::/8"]}},
        # An ipBlock decides alone: a selector beside it does not make it everything.
        {"ipBlock": {"cidr": "10.0.0.0/8"}, "namespaceSelector": {}},
        {"namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "Exists"}]}},
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}},
        {"namespaceSelector": {}, "podSelector": {"matchExpressions": [{"key": "app", "operator": "Exists"}]}},
        {"namespaceSelector": "everything"},
        # The pods of the policy's own namespace: no namespaceSelector is not every namespace.
        {"podSelector": {}},
    ],
    ids=[
        "not-a-mapping",
        "private-range",
        "v6-anywhere-but",
        "ip-block-first",
        "namespace-expressions",
        "namespace-labels",
        "pod-expressions",
        "selector-not-a-mapping",
        "own-namespace-pods",
    ],
)
def test_no_allow_all_network_policy_accepts_peers_that_narrow_the_rule(peer):
    assert messages(rules.no_allow_all_network_policy_validator, netpol_args(ingress=[{"from": [peer]}])) == []


def test_no_allow_all_network_policy_ignores_other_kinds_and_a_policy_without_a_spec():
    assert messages(rules.no_allow_all_network_policy_validator, resource_args(DEPLOYMENT, {"spec": {}})) == []
    no_spec = resource_args(NETPOL, {"metadata": {"name": "api"}, "spec": "unreadable"})
    assert messages(rules.no_allow_all_network_policy_validator, no_spec) == []


# --- prefer-pod-disruption-budget ---------------------------------------------------------------

API_LABELS = {"app.kubernetes.io/name": "api"}


def budget(namespace_name: str | None = "smartnation-dev", *, provider_namespace: str | None = None) -> PolicyResource:
    metadata: dict[str, Any] = {"name": "api"}
    if namespace_name:
        metadata["namespace"] = namespace_name
    props = {"metadata": metadata, "spec": {"maxUnavailable": 1, "selector": {"matchLabels": API_LABELS}}}
    return stack_resource(
        PDB, props, name=f"api-pdb-{namespace_name}-{provider_namespace}", provider_namespace=provider_namespace
    )


def unplaced(replicas: Any) -> dict[str, Any]:
    """A workload with no namespace of its own: it lands in its provider's."""
    props = deployment(3)
    del props["metadata"]["namespace"]
    props["spec"]["replicas"] = replicas
    return props


def without_provider(resource_type: str, props: dict[str, Any], name: str) -> PolicyResource:
    return PolicyResource(
        resource_type, unknown_checking_proxy(props), urn_of(resource_type, name), name, options(), None, None, [], {}
    )


def test_prefer_pod_disruption_budget_message_names_the_workload_its_count_namespace_and_pods():
    api = stack_resource(DEPLOYMENT, deployment(2), name="api")
    assert check(rules.prefer_pod_disruption_budget_validator, stack_args(api)) == [
        (
            "Deployment 'api' runs 2 replicas in namespace 'smartnation-dev' but no PodDisruptionBudget in the "
            "stack selects its pods {'app.kubernetes.io/name': 'api'}; add one with maxUnavailable: 1.",
            api.urn,
        )
    ]


def test_prefer_pod_disruption_budget_reads_every_workload_past_single_and_unknown_ones():
    single = stack_resource(DEPLOYMENT, deployment(1), name="single")
    unknown = stack_resource(STATEFULSET, unplaced(UNKNOWN_STRING_VALUE), name="unknown", provider_namespace="x")
    uncovered = stack_resource(STATEFULSET, deployment(3), name="uncovered")
    violations = check(rules.prefer_pod_disruption_budget_validator, stack_args(single, unknown, uncovered))
    assert [urn for _, urn in violations] == [uncovered.urn]


def test_prefer_pod_disruption_budget_places_workloads_and_budgets_in_their_providers_namespace():
    api = stack_resource(DEPLOYMENT, unplaced(3.0), name="api", provider_namespace="smartnation-dev")
    # Covered by a budget placed by its metadata, and by one placed by its provider.
    assert check(rules.prefer_pod_disruption_budget_validator, stack_args(api, budget())) == []
    by_provider = budget(None, provider_namespace="smartnation-dev")
    assert check(rules.prefer_pod_disruption_budget_validator, stack_args(api, by_provider)) == []
    # A budget whose provider puts it elsewhere covers nothing here.
    elsewhere = budget(None, provider_namespace="smartnation-staging")
    violations = check(rules.prefer_pod_disruption_budget_validator, stack_args(api, elsewhere))
    assert [urn for _, urn in violations] == [api.urn]
    assert "in namespace 'smartnation-dev'" in violations.messages[0]


def test_prefer_pod_disruption_budget_without_providers_lands_in_default():
    api = without_provider(DEPLOYMENT, unplaced(3.0), "api")
    in_dev = budget()
    in_default = without_provider(PDB, {"spec": {"selector": {"matchLabels": API_LABELS}}}, "api-pdb")
    violations = check(rules.prefer_pod_disruption_budget_validator, stack_args(api, in_dev))
    assert [urn for _, urn in violations] == [api.urn]
    assert "in namespace 'default'" in violations.messages[0]
    assert check(rules.prefer_pod_disruption_budget_validator, stack_args(api, in_default)) == []


# --- topology-spread ----------------------------------------------------------------------------


def anti_affinity(kind: str, term: dict[str, Any]) -> dict[str, Any]:
    return {"affinity": {"podAntiAffinity": {f"{kind}DuringSchedulingIgnoredDuringExecution": [term]}}}


def test_topology_spread_message_names_the_count_and_the_zone_key():
    args = resource_args(STATEFULSET, deployment(2), name="postgres")
    assert messages(rules.topology_spread_validator, args) == [
        "StatefulSet 'postgres' runs 2 replicas but does not spread them across zones; add a "
        "topologySpreadConstraint on 'topology.kubernetes.io/zone' (or a pod anti-affinity with that topology key)."
    ]


@pytest.mark.parametrize(
    "spread",
    [
        {"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": HOST}, {"maxSkew": 1, "topologyKey": ZONE}]},
        anti_affinity("required", {"topologyKey": ZONE, "labelSelector": {"matchLabels": {"a": "b"}}}),
        {
            "affinity": {
                "podAntiAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": [{"topologyKey": HOST}],
                    "preferredDuringSchedulingIgnoredDuringExecution": [
                        {"weight": 1, "podAffinityTerm": {"topologyKey": ZONE}}
                    ],
                }
            }
        },
    ],
    ids=["zone-among-constraints", "required-anti-affinity", "preferred-beside-required-hosts"],
)
def test_topology_spread_accepts_every_way_of_naming_the_zone(spread):
    assert messages(rules.topology_spread_validator, resource_args(DEPLOYMENT, deployment(3, pod(**spread)))) == []


@pytest.mark.parametrize(
    "spread",
    [
        anti_affinity("required", {"topologyKey": HOST}),
        anti_affinity("preferred", {"weight": 1, "podAffinityTerm": {"topologyKey": HOST}}),
        # A preferred term keeps its key under podAffinityTerm: one beside it is not read by the scheduler.
        anti_affinity("preferred", {"weight": 1, "topologyKey": ZONE}),
        # Affinity draws pods together: the zone there is the opposite of a spread.
        {"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{"topologyKey": ZONE}]}}},
        {"topologySpreadConstraints": [{"maxSkew": 1, "labelSelector": {"matchLabels": {"zone": ZONE}}}]},
    ],
    ids=["required-hosts", "preferred-hosts", "preferred-key-misplaced", "affinity-not-anti", "constraint-without-key"],
)
def test_topology_spread_flags_terms_that_do_not_spread_across_zones(spread):
    violations = messages(rules.topology_spread_validator, resource_args(DEPLOYMENT, deployment(3, pod(**spread))))
    assert len(violations) == 1 and violations[0].startswith("Deployment 'api' runs 3 replicas but")


def test_topology_spread_judges_only_replicated_kinds():
    daemon = resource_args("kubernetes:apps/v1:DaemonSet", workload("kubernetes:apps/v1:DaemonSet", pod()))
    assert messages(rules.topology_spread_validator, daemon) == []


# --- namespace-default-deny ---------------------------------------------------------------------

DEFAULT_DENY_ADVICE = (
    "has no default-deny NetworkPolicy in this stack (podSelector {}, policyTypes [Ingress, Egress], no ingress "
    "or egress rules); add one and allow traffic with separate policies."
)


def test_namespace_default_deny_message_names_the_namespace_and_what_a_default_deny_is():
    ns = namespace()
    assert check(rules.namespace_default_deny_validator, stack_args(ns)) == [
        (f"Namespace 'smartnation-dev' {DEFAULT_DENY_ADVICE}", ns.urn)
    ]


@pytest.mark.parametrize(
    "policy",
    [
        stack_resource(
            NETPOL, {"metadata": {"name": "x", "namespace": "smartnation-dev"}, "spec": "unreadable"}, name="x"
        ),
        # A selector with expressions picks some pods: it denies only for them.
        network_policy(podSelector={"matchExpressions": [{"key": "app", "operator": "Exists"}]}),
        network_policy(podSelector={"matchLabels": {"app": "api"}}),
    ],
    ids=["spec-not-a-mapping", "selector-with-expressions", "selector-with-labels"],
)
def test_namespace_default_deny_does_not_count_a_policy_that_denies_only_some_pods(policy):
    assert len(check(rules.namespace_default_deny_validator, stack_args(namespace(), policy))) == 1


def test_namespace_default_deny_counts_empty_selectors_and_a_policy_without_a_provider():
    empty_labels = network_policy(podSelector={"matchLabels": {}, "matchExpressions": []})
    assert check(rules.namespace_default_deny_validator, stack_args(namespace(), empty_labels)) == []
    props = {
        "metadata": {"name": "deny", "namespace": "smartnation-dev"},
        "spec": {"policyTypes": ["Ingress", "Egress"]},
    }
    unplaced_policy = without_provider(NETPOL, props, "deny")
    assert check(rules.namespace_default_deny_validator, stack_args(namespace(), unplaced_policy)) == []


def test_namespace_default_deny_goes_by_dependency_when_only_the_namespaces_name_is_unknown():
    ns = stack_resource(NAMESPACE, {"metadata": {"name": UNKNOWN_STRING_VALUE}}, name="tenant-ns")
    policy = network_policy("tenant")
    policy.property_dependencies["metadata"] = [ns]
    assert check(rules.namespace_default_deny_validator, stack_args(ns, policy)) == []


# --- protect-production-state -------------------------------------------------------------------


def test_protect_production_state_message_says_how_to_protect():
    args = resource_args(STATEFULSET, workload(STATEFULSET, pod()), name="postgres", config=target_config("production"))
    assert messages(rules.protect_production_state_validator, args) == [
        "StatefulSet 'postgres' holds production data but is not protected; create it with "
        "pulumi.ResourceOptions(protect=True) so that no update or destroy can delete it."
    ]


# --- what the rules read: labels, image references, literals -------------------------------------


def test_pod_labels_that_are_not_a_mapping_are_no_labels():
    props = deployment(3)
    props["spec"]["template"]["metadata"]["labels"] = ["app.kubernetes.io/name=api"]
    api = stack_resource(DEPLOYMENT, props, name="api")
    (message,) = check(rules.prefer_pod_disruption_budget_validator, stack_args(api)).messages
    assert "selects its pods {};" in message


@pytest.mark.parametrize(
    ("image", "reference"),
    [
        ("api", ImageReference("api", None, None)),
        ("api:1.2", ImageReference("api", "1.2", None)),
        ("host:5000/team/app", ImageReference("host:5000/team/app", None, None)),
        ("host:5000/team/app:1.2@sha256:abc", ImageReference("host:5000/team/app", "1.2", "sha256:abc")),
        # Only a colon after the last '/' starts a tag.
        ("host/team:x/app", ImageReference("host/team:x/app", None, None)),
    ],
)
def test_an_image_reference_splits_into_name_tag_and_digest(image, reference):
    assert parse_image(image) == reference


@pytest.mark.parametrize(("value", "literal"), [("X", True), ("'X'", True), ("''", False), ("  ", False)])
def test_a_one_character_value_is_a_literal_and_empty_quotes_are_not(value, literal):
    assert is_literal(value) is literal


# --- the plaintext detector's findings, where and what ------------------------------------------

PEM_HEADER = "-----BEGIN " + "PRIVATE KEY-----"  # split so no scanner takes this file for a key


def test_configuration_text_findings_name_each_line_and_what_it_holds_past_comments():
    text = "\n".join(
        [
            # Each comment would be a finding as a line of its own: a SQL literal is found anywhere in a line.
            "# ALTER ROLE app PASSWORD 'commented'",
            "  -- ALTER ROLE app PASSWORD 'commented'",
            "// ALTER ROLE app PASSWORD 'commented'",
            "; ALTER ROLE app PASSWORD 'commented'",
            "listen_addresses = '*'",
            "ALTER ROLE app PASSWORD 'hunter2'",
            "url = postgres://app:hunter2@db:5432/app",
            "ref = postgres://app:${DB_PASSWORD}@db:5432/app",
            "api_token: abc123",
            PEM_HEADER,
        ]
    )
    assert plaintext.in_text(text) == [
        plaintext.Finding("line 6", "a SQL password literal"),
        plaintext.Finding("line 7", "a password in a URL's user info"),
        plaintext.Finding("line 9", "'api_token' set to a literal credential"),
        plaintext.Finding("text", "a PEM private key"),
    ]


def test_a_config_entry_is_judged_by_its_key_then_by_its_text():
    assert plaintext.in_config_entry("db.password", "hunter2\nALTER ROLE x PASSWORD 'y'") == [
        plaintext.Finding("db.password", "a credential under a key named for one"),
        plaintext.Finding("db.password line 2", "a SQL password literal"),
    ]
    assert plaintext.in_config_entry("db.password_file", "/run/secrets/db") == []


# --- require-seccomp-profile ----------------------------------------------------------------------

SECCOMP_ADVICE = (
    "; set securityContext.seccompProfile.type to RuntimeDefault on the pod (or Localhost with a reviewed profile)."
)


def test_require_seccomp_profile_says_what_each_container_runs_with():
    spec = pod(with_context("none", seccompProfile=None), with_context("open", seccompProfile={"type": "Unconfined"}))
    assert messages(rules.require_seccomp_profile_validator, deployment_args(spec)) == [
        f"Deployment 'api': container 'none' runs with no seccompProfile{SECCOMP_ADVICE}",
        f"Deployment 'api': container 'open' runs with seccompProfile Unconfined{SECCOMP_ADVICE}",
    ]


# --- where a namespaced object lands ------------------------------------------------------------


@pytest.mark.parametrize(
    ("metadata_namespace", "provider_props", "lands_in"),
    [
        ("smartnation-dev", {"namespace": "other"}, "smartnation-dev"),
        # An empty or non-string namespace is no namespace: the provider's, else `default`.
        ("", {"namespace": "smartnation-dev"}, "smartnation-dev"),
        (7, {"namespace": "smartnation-dev"}, "smartnation-dev"),
        (None, {"namespace": ""}, "default"),
        (None, {"namespace": 7}, "default"),
        (None, None, "default"),
    ],
)
def test_an_object_lands_in_its_own_namespace_else_its_providers_else_default(
    metadata_namespace, provider_props, lands_in
):
    assert namespace_of(metadata_namespace, provider_props) == lands_in


# --- require-resource-limits, images-by-digest, no-added-capabilities ----------------------------


def test_require_resource_limits_names_every_missing_or_empty_quantity():
    spec = pod(container("api", resources={"requests": {"cpu": "", "memory": "64Mi"}, "limits": {"cpu": "1"}}))
    assert messages(rules.require_resource_limits_validator, deployment_args(spec)) == [
        "Deployment 'api': container 'api' has no resources.requests.cpu, resources.limits.memory; "
        "set requests and limits for both cpu and memory."
    ]


def test_images_by_digest_names_each_tagged_image_past_a_missing_one():
    spec = pod(container("a", image=""), container("b", image=7), container("c", image=f"{MIRROR}/api:1.4.2"))
    assert messages(rules.images_by_digest_validator, deployment_args(spec)) == [
        "Deployment 'api': container 'c' image 'registry.smartnation.mc/mirror/api:1.4.2' is not referenced by "
        "digest; name it <registry>/<repository>@sha256:<64 hex digits>, the digest the image build wrote in "
        "environments/images.lock.yaml."
    ]


def test_no_added_capabilities_reads_cap_prefixes_and_says_both_problems():
    spec = pod(
        with_context("bind", capabilities={"drop": ["all"], "add": ["cap_net_bind_service"]}),
        with_context("admin", capabilities={"drop": ["NET_RAW"], "add": ["CAP_NET_ADMIN", "sys_ptrace"]}),
    )
    assert messages(rules.no_added_capabilities_validator, deployment_args(spec)) == [
        "Deployment 'api': container 'admin' adds capabilities ['NET_ADMIN', 'SYS_PTRACE'] and does not drop ALL "
        "capabilities; set securityContext.capabilities to drop: [ALL] and add at most NET_BIND_SERVICE."
    ]


# --- allowed-registries, allowed-storage-classes, no-privileged -----------------------------------


def test_allowed_registries_names_the_image_the_cluster_and_its_registries_past_a_non_string_image():
    untrusted = f"registry.smartnation.mc/mirror-untrusted/api@sha256:{'a' * 64}"
    spec = pod(container("a", image=7), container("b", image=untrusted))
    args = resource_args(DEPLOYMENT, workload(DEPLOYMENT, spec), config=target_config("dev"))
    assert messages(rules.allowed_registries_validator, args) == [
        f"Deployment 'api': container 'b' image '{untrusted}' is not from a registry that cluster 'monaco-onprem' "
        "allows; use one of ['registry.smartnation.mc/mirror']."
    ]


def test_allowed_storage_classes_names_each_claim_and_the_clusters_classes():
    props = workload(
        STATEFULSET,
        pod(volumes=[{"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {"storageClassName": "gp2"}}}}]),
    )
    props["spec"]["volumeClaimTemplates"] = [
        {"spec": {}},
        {"metadata": {"name": "data"}, "spec": {"storageClassName": ""}},
    ]
    classes = "use one of ['ceph-block', 'local-nvme']."
    args = resource_args(STATEFULSET, props, name="db", config=target_config("dev"))
    assert messages(rules.allowed_storage_classes_validator, args) == [
        "StatefulSet 'db' volumeClaimTemplate '#0' has no storageClassName; set one of ['ceph-block', 'local-nvme'].",
        "StatefulSet 'db' volumeClaimTemplate 'data' has no storageClassName; set one of ['ceph-block', 'local-nvme'].",
        f"StatefulSet 'db' ephemeral volume 'scratch' uses storage class 'gp2', which cluster 'monaco-onprem' does "
        f"not have; {classes}",
    ]
    volume = resource_args(PV, {"spec": {"storageClassName": "gp2"}}, name="pv", config=target_config("dev"))
    assert messages(rules.allowed_storage_classes_validator, volume) == [
        f"PersistentVolume 'pv' uses storage class 'gp2', which cluster 'monaco-onprem' does not have; {classes}"
    ]


def test_no_privileged_says_each_way_to_the_node_in_order():
    root = container(
        "root",
        securityContext={
            "privileged": True,
            "allowPrivilegeEscalation": True,
            "capabilities": {"add": ["sys_admin", "NET_ADMIN"]},
            "runAsUser": 0.0,
        },
    )
    spec = pod(
        root,
        hostNetwork=True,
        hostPID=False,
        hostIPC=True,
        volumes=[{"name": "host", "hostPath": {"path": "/var/run"}}],
        # The container sets no runAsNonRoot of its own: the pod's counts.
        securityContext={"runAsNonRoot": True},
    )
    assert messages(rules.no_privileged_validator, deployment_args(spec)) == [
        "Deployment 'api': pod spec sets hostNetwork: true; pods must not share the node's namespaces.",
        "Deployment 'api': pod spec sets hostIPC: true; pods must not share the node's namespaces.",
        "Deployment 'api': volume 'host' mounts hostPath '/var/run'; use a PersistentVolumeClaim, ConfigMap or "
        "Secret instead.",
        "Deployment 'api': container 'root': privileged: true; allowPrivilegeEscalation: true; adds capabilities "
        "['SYS_ADMIN']; runAsUser is 0 (root).",
    ]


def test_no_privileged_says_how_to_set_run_as_non_root():
    spec = pod(container("api", securityContext={"runAsUser": 10001}))
    assert messages(rules.no_privileged_validator, deployment_args(spec)) == [
        "Deployment 'api': container 'api': runAsNonRoot is not true (set it in the pod or container securityContext)."
    ]


def test_a_workload_without_a_replica_count_runs_one_as_kubernetes_defaults_it():
    props = deployment(3)
    del props["spec"]["replicas"]
    assert messages(rules.topology_spread_validator, resource_args(DEPLOYMENT, props)) == []
    api = stack_resource(DEPLOYMENT, props, name="api")
    assert check(rules.prefer_pod_disruption_budget_validator, stack_args(api)) == []


def test_allowed_registries_reads_a_registry_given_with_a_trailing_slash_as_the_same_prefix():
    image = f"{MIRROR}/api@sha256:{'a' * 64}"
    config = target_config("dev", allowed_registries=[f"{MIRROR}/"])
    args = resource_args(DEPLOYMENT, workload(DEPLOYMENT, pod(container("api", image=image))), config=config)
    assert messages(rules.allowed_registries_validator, args) == []


# --- no-plaintext-secrets -----------------------------------------------------------------------


def test_no_plaintext_secrets_in_config_maps_judges_unknown_values_by_their_key_alone():
    data = {
        "db.password": UNKNOWN_STRING_VALUE,
        "mode": UNKNOWN_STRING_VALUE,
        "replicas": 3.0,
        "init.sql": "ALTER ROLE app PASSWORD 'hunter2'",
    }
    args = resource_args(CONFIG_MAP, {"metadata": {"name": "cfg"}, "data": data}, name="cfg")
    advice = "; put credentials in a Secret and mount it or reference it with envFrom.secretRef."
    assert messages(rules.no_plaintext_secrets_validator, args) == [
        f"ConfigMap 'cfg': data.db.password: a key named for a credential{advice}",
        f"ConfigMap 'cfg': data.init.sql line 1: a SQL password literal{advice}",
    ]


def test_no_plaintext_secrets_in_env_reads_every_entry_past_value_from_and_unknown_ones():
    env = [
        {"name": "FROM_SECRET", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
        {"name": "API_TOKEN", "value": UNKNOWN_STRING_VALUE},
        {"name": "MODE", "value": UNKNOWN_STRING_VALUE},
        {"name": "WORKERS", "value": 4.0},
        {"name": "DB_PASSWORD", "value": "hunter2"},
    ]
    args = deployment_args(pod(container("api", env=env)))
    advice = "; read it from a Secret with valueFrom.secretKeyRef instead."
    assert messages(rules.no_plaintext_secrets_validator, args) == [
        f"Deployment 'api': container 'api' env API_TOKEN: a credential from a value{advice}",
        f"Deployment 'api': container 'api' env DB_PASSWORD: a credential written as a literal value{advice}",
    ]


# --- how the rules read a resource (workloads.py) ------------------------------------------------


@pytest.mark.parametrize(
    ("path", "found"),
    [
        (("ports", 0, "port"), 5432),
        (("ports", -1, "name"), "s3"),
        (("ports", 2), None),
        (("ports", -3), None),
        (("type", 0), None),  # a string is no list of letters here
        (("selector", 0), None),  # nor a mapping a list
        (("ports", "0"), None),  # nor a list a mapping
        (("missing", "deeper"), None),
    ],
)
def test_dig_reads_a_path_or_none_as_soon_as_a_step_is_missing_or_of_the_wrong_shape(path, found):
    spec = {"type": "LoadBalancer", "selector": {"app": "db"}, "ports": [{"port": 5432}, {"port": 9000, "name": "s3"}]}
    assert dig(spec, *path) == found


@pytest.mark.parametrize(("value", "listed"), [(None, []), ("ab", []), (7, []), ({"a": 1}, []), ((1, 2), [1, 2])])
def test_items_lists_a_sequence_and_counts_anything_else_as_empty(value, listed):
    assert items(value) == listed


def test_kind_of_is_the_last_part_of_a_type_or_the_whole_name():
    assert kind_of("kubernetes:apps/v1:Deployment") == "Deployment"
    assert kind_of("Deployment") == "Deployment"


def test_containers_name_every_kind_of_container_and_fall_back_to_their_index():
    spec = {
        "initContainers": [{"name": "migrate"}],
        "containers": [{"name": ""}, "not-a-container", {"name": 7}],
        "ephemeralContainers": [{"name": "debug"}],
    }
    assert [str(c) for c in containers(spec)] == [
        "init container 'migrate'",
        "container '#0'",
        "container '#2'",
        "ephemeral container 'debug'",
    ]


def test_a_pod_template_that_is_not_a_mapping_is_no_pod_spec():
    props = {"spec": {"template": {"spec": ["not", "a", "pod"]}}}
    assert pod_spec(DEPLOYMENT, props) is None
