"""The guardrails: one `<rule>_validator` function per rule, then the policies that run them.

Validators take the engine's arguments (`ResourceValidationArgs` or `StackValidationArgs`) and a
`report_violation` callback, so the unit tests call them directly with small fakes. Every message
names the resource and, for pod specs, the container, and says what to do instead.

Mandatory rules block a deployment; the advisory ones are judgment calls that a reviewer weighs.
Resources that a `kubernetes:helm.sh/v4:Chart` renders reach the pack as the plain Kubernetes
resources they are, so third-party charts are held to the same rules.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    Severity,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UnknownValueError

from smartnation_policy.target import TARGET_CONFIG_SCHEMA, Target
from smartnation_policy.workloads import (
    NAMESPACE_TYPE,
    NETWORK_POLICY_TYPE,
    PDB_TYPE,
    PV_TYPE,
    PVC_TYPE,
    REPLICATED_TYPES,
    STATEFULSET_TYPE,
    ZONE_KEY,
    containers,
    dig,
    items,
    kind_of,
    namespace_of,
    parse_image,
    pod_labels,
    pod_spec,
    replicas,
    selector_matches,
)


def _subject(args: ResourceValidationArgs) -> str:
    """How a message names the resource: its kind and Pulumi name, which the preview also shows."""
    return f"{kind_of(args.resource_type)} '{args.name}'"


# --- require-resource-limits ------------------------------------------------------------------


def require_resource_limits_validator(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Every container, init containers included, requests and limits both cpu and memory.

    Without requests the scheduler packs pods blindly; without limits one pod can starve a node
    that also runs the city's broker and databases.
    """
    spec = pod_spec(args.resource_type, args.props)
    if spec is None:
        return
    for container in containers(spec):
        missing = [
            f"{section}.{resource}"
            for section in ("requests", "limits")
            for resource in ("cpu", "memory")
            if dig(container.spec, "resources", section, resource) in (None, "")
        ]
        if missing:
            report_violation(
                f"{_subject(args)}: {container} has no resources.{', resources.'.join(missing)}; "
                "set requests and limits for both cpu and memory.",
                None,
            )


# --- no-latest-image ----------------------------------------------------------------------------


def no_latest_image_validator(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Images carry an explicit version tag (or a digest); `:latest` and untagged images do not.

    A moving tag makes a rollback redeploy something else and lets two replicas run different code.
    """
    spec = pod_spec(args.resource_type, args.props)
    if spec is None:
        return
    for container in containers(spec):
        image = container.spec.get("image")
        if not isinstance(image, str) or not image:
            report_violation(f"{_subject(args)}: {container} has no image.", None)
            continue
        reference = parse_image(image)
        if reference.digest:
            continue
        if reference.tag is None:
            report_violation(
                f"{_subject(args)}: {container} image '{image}' has no tag, which pulls ':latest'; "
                "pin a version tag or a digest.",
                None,
            )
        elif reference.tag == "latest":
            report_violation(
                f"{_subject(args)}: {container} image '{image}' uses the ':latest' tag; pin a version tag or a digest.",
                None,
            )


# --- allowed-registries -------------------------------------------------------------------------


def allowed_registries_validator(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Images come only from the registries the target cluster allows (its profile's `registry.allowed`).

    The on-prem vault pulls only from its own mirror; anything else would not even start there.
    """
    spec = pod_spec(args.resource_type, args.props)
    if spec is None:
        return
    target = Target.from_config(args.get_config())
    for container in containers(spec):
        image = container.spec.get("image")
        if not isinstance(image, str):
            continue  # no-latest-image reports a missing image
        # A prefix matches only up to a path boundary: `registry.smartnation.mc/mirror` must not
        # admit `registry.smartnation.mc/mirror-untrusted/...`.
        if not any(image.startswith(prefix.rstrip("/") + "/") for prefix in target.allowed_registries):
            report_violation(
                f"{_subject(args)}: {container} image '{image}' is not from a registry that cluster "
                f"'{target.cluster}' allows; use one of {list(target.allowed_registries)}.",
                None,
            )


# --- allowed-storage-classes --------------------------------------------------------------------


def _storage_class_problem(storage_class: Any, target: Target) -> str | None:
    # An unset class means "whatever the cluster's default is", which differs per cluster and can
    # change under us; an empty string means "no class" and binds only to pre-made volumes.
    if not isinstance(storage_class, str) or not storage_class:
        return f"has no storageClassName; set one of {list(target.storage_classes)}"
    if storage_class not in target.storage_classes:
        return (
            f"uses storage class '{storage_class}', which cluster '{target.cluster}' does not have; "
            f"use one of {list(target.storage_classes)}"
        )
    return None


def allowed_storage_classes_validator(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Volumes name one of the target cluster's storage classes explicitly.

    Checks PersistentVolumeClaims, PersistentVolumes, StatefulSet volumeClaimTemplates and the
    generic ephemeral volumes of any pod spec (each of which becomes a claim).
    """
    claims: list[tuple[str, Any]] = []  # (what, storageClassName)
    if args.resource_type in (PVC_TYPE, PV_TYPE):
        claims.append(("", dig(args.props, "spec", "storageClassName")))
    if args.resource_type == STATEFULSET_TYPE:
        for index, template in enumerate(items(dig(args.props, "spec", "volumeClaimTemplates"))):
            name = dig(template, "metadata", "name") or f"#{index}"
            claims.append((f" volumeClaimTemplate '{name}'", dig(template, "spec", "storageClassName")))
    spec = pod_spec(args.resource_type, args.props)
    if spec is not None:
        for volume in items(spec.get("volumes")):
            template = dig(volume, "ephemeral", "volumeClaimTemplate")
            if template is not None:
                name = dig(volume, "name")
                claims.append((f" ephemeral volume '{name}'", dig(template, "spec", "storageClassName")))
    if not claims:
        return
    target = Target.from_config(args.get_config())
    for what, storage_class in claims:
        problem = _storage_class_problem(storage_class, target)
        if problem:
            report_violation(f"{_subject(args)}{what} {problem}.", None)


# --- no-privileged ------------------------------------------------------------------------------

# Capabilities that amount to root on the node; the rest are judged in review.
_ROOT_EQUIVALENT_CAPABILITIES = frozenset({"ALL", "SYS_ADMIN"})


def no_privileged_validator(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """No pod may reach the node: no privileged mode, escalation, host namespaces or hostPath,
    and every container runs as a non-root user (set at pod or container level).
    """
    spec = pod_spec(args.resource_type, args.props)
    if spec is None:
        return
    subject = _subject(args)
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field) is True:
            report_violation(
                f"{subject}: pod spec sets {field}: true; pods must not share the node's namespaces.", None
            )
    for volume in items(spec.get("volumes")):
        host_path = dig(volume, "hostPath")
        if host_path is not None:
            report_violation(
                f"{subject}: volume '{dig(volume, 'name')}' mounts hostPath '{dig(host_path, 'path')}'; "
                "use a PersistentVolumeClaim, ConfigMap or Secret instead.",
                None,
            )
    pod_context = spec.get("securityContext") or {}
    for container in containers(spec):
        context = container.spec.get("securityContext") or {}
        problems = []
        if context.get("privileged") is True:
            problems.append("privileged: true")
        if context.get("allowPrivilegeEscalation") is True:
            problems.append("allowPrivilegeEscalation: true")
        added = {str(c).upper() for c in items(dig(context, "capabilities", "add"))}
        if added & _ROOT_EQUIVALENT_CAPABILITIES:
            problems.append(f"adds capabilities {sorted(added & _ROOT_EQUIVALENT_CAPABILITIES)}")
        # The container's own setting wins over the pod's, as in Kubernetes.
        run_as_non_root = context.get("runAsNonRoot")
        if run_as_non_root is None:
            run_as_non_root = pod_context.get("runAsNonRoot")
        if run_as_non_root is not True:
            problems.append("runAsNonRoot is not true (set it in the pod or container securityContext)")
        run_as_user = context.get("runAsUser")
        if run_as_user is None:
            run_as_user = pod_context.get("runAsUser")
        if run_as_user is not None and int(run_as_user) == 0:
            problems.append("runAsUser is 0 (root)")
        if problems:
            report_violation(f"{subject}: {container}: {'; '.join(problems)}.", None)


# --- namespace-default-deny ---------------------------------------------------------------------


def _is_default_deny(props: Mapping[str, Any]) -> bool:
    """An empty podSelector, both policy types and not a single allow rule."""
    spec = props.get("spec")
    if not isinstance(spec, Mapping):
        return False
    selector = spec.get("podSelector")
    selects_all = selector is None or (
        not (dig(selector, "matchLabels") or {}) and not items(dig(selector, "matchExpressions"))
    )
    types = {str(t) for t in items(spec.get("policyTypes"))}
    return (
        selects_all
        and {"Ingress", "Egress"} <= types
        and not items(spec.get("ingress"))
        and not items(spec.get("egress"))
    )


def _depends_on(resource: Any, dependency: Any) -> bool:
    if any(d is dependency for d in resource.dependencies):
        return True
    return any(d is dependency for deps in resource.property_dependencies.values() for d in deps)


def _lands_in(policy: Any, namespace: Any, namespace_name: str | None) -> bool:
    """Whether a NetworkPolicy resource is created in the given Namespace resource."""
    try:
        provider_props = policy.provider.props if policy.provider is not None else None
        policy_namespace = namespace_of(dig(policy.props, "metadata", "namespace"), provider_props)
        if namespace_name is not None:
            return policy_namespace == namespace_name
    except UnknownValueError:
        pass
    # During a preview a new namespace's name may not be known yet; then a policy that takes its
    # namespace from the Namespace resource's output is taken to land in it.
    return _depends_on(policy, namespace)


def namespace_default_deny_validator(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    """Every Namespace the stack creates also gets a deny-all NetworkPolicy from the stack.

    Traffic is then allowed only by explicit policies next to the workloads that need it.
    A stack policy runs after the resources are planned (preview) or applied (up): a PR preview
    is where this is caught.
    """
    denying = [r for r in args.resources if r.resource_type == NETWORK_POLICY_TYPE and _is_default_deny(r.props)]
    for namespace in (r for r in args.resources if r.resource_type == NAMESPACE_TYPE):
        try:
            name = dig(namespace.props, "metadata", "name")
        except UnknownValueError:
            name = None
        if not any(_lands_in(policy, namespace, name) for policy in denying):
            report_violation(
                f"Namespace '{name or namespace.name}' has no default-deny NetworkPolicy in this stack "
                "(podSelector {}, policyTypes [Ingress, Egress], no ingress or egress rules); "
                "add one and allow traffic with separate policies.",
                namespace.urn,
            )


# --- protect-production-state -------------------------------------------------------------------

# Kubernetes deletes a namespace's claims with the namespace, so protecting the claims alone
# would not keep the data. Secrets are left out on purpose: their source of truth is the
# encrypted stack config, and the next `up` recreates them.
STATEFUL_TYPES: tuple[str, ...] = (STATEFULSET_TYPE, PVC_TYPE, PV_TYPE, NAMESPACE_TYPE)


def protect_production_state_validator(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """In production, resources that hold or own data carry Pulumi's `protect` option."""
    if args.resource_type not in STATEFUL_TYPES:
        return
    target = Target.from_config(args.get_config())
    if target.is_production and not args.opts.protect:
        report_violation(
            f"{_subject(args)} holds production data but is not protected; create it with "
            "pulumi.ResourceOptions(protect=True) so that no update or destroy can delete it.",
            None,
        )


# --- data-residency -----------------------------------------------------------------------------


def data_residency_validator(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Production deploys only to clusters in the countries allowed for production.

    A resource policy, not a stack policy, so that it blocks before the first resource is created.
    """
    target = Target.from_config(args.get_config())
    if target.is_production and target.country not in target.production_countries:
        report_violation(
            f"{_subject(args)}: production must not deploy to cluster '{target.cluster}' in country "
            f"{target.country}; production may run only in {list(target.production_countries)}.",
            None,
        )


# --- prefer-pod-disruption-budget (advisory) ----------------------------------------------------


def prefer_pod_disruption_budget_validator(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    """A workload with more than one replica has a PodDisruptionBudget selecting its pods, so that
    draining nodes for maintenance never takes all of them down at once.
    """
    budgets = [r for r in args.resources if r.resource_type == PDB_TYPE]
    for workload in (r for r in args.resources if r.resource_type in REPLICATED_TYPES):
        try:
            count = replicas(workload.props)
            if count < 2:
                continue
            namespace = namespace_of(
                dig(workload.props, "metadata", "namespace"),
                workload.provider.props if workload.provider is not None else None,
            )
            labels = pod_labels(workload.resource_type, workload.props)
            covered = any(
                namespace_of(dig(b.props, "metadata", "namespace"), b.provider.props if b.provider else None)
                == namespace
                and selector_matches(dig(b.props, "spec", "selector"), labels)
                for b in budgets
            )
        except UnknownValueError:
            continue  # advisory: judge it once the values are known rather than guess
        if not covered:
            report_violation(
                f"{kind_of(workload.resource_type)} '{workload.name}' runs {count} replicas in namespace "
                f"'{namespace}' but no PodDisruptionBudget in the stack selects its pods {dict(labels)}; "
                "add one with maxUnavailable: 1.",
                workload.urn,
            )


# --- topology-spread (advisory) -----------------------------------------------------------------


def _spreads_across_zones(spec: Mapping[str, Any]) -> bool:
    if any(dig(c, "topologyKey") == ZONE_KEY for c in items(spec.get("topologySpreadConstraints"))):
        return True
    anti = dig(spec, "affinity", "podAntiAffinity") or {}
    required = items(dig(anti, "requiredDuringSchedulingIgnoredDuringExecution"))
    preferred = items(dig(anti, "preferredDuringSchedulingIgnoredDuringExecution"))
    return any(dig(term, "topologyKey") == ZONE_KEY for term in required) or any(
        dig(term, "podAffinityTerm", "topologyKey") == ZONE_KEY for term in preferred
    )


def topology_spread_validator(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """A workload with more than one replica spreads them across zones, so one zone's outage
    (a Düsseldorf availability zone, a Monaco site) leaves the others serving.
    """
    if args.resource_type not in REPLICATED_TYPES:
        return
    spec = pod_spec(args.resource_type, args.props)
    count = replicas(args.props)
    if spec is None or count < 2 or _spreads_across_zones(spec):
        return
    report_violation(
        f"{_subject(args)} runs {count} replicas but does not spread them across zones; add a "
        f"topologySpreadConstraint on '{ZONE_KEY}' (or a pod anti-affinity with that topology key).",
        None,
    )


# --- the policies -------------------------------------------------------------------------------

_MANDATORY = EnforcementLevel.MANDATORY
_ADVISORY = EnforcementLevel.ADVISORY

POLICIES: list[ResourceValidationPolicy | StackValidationPolicy] = [
    ResourceValidationPolicy(
        name="require-resource-limits",
        description="Every container, init containers included, sets requests and limits for cpu and memory.",
        validate=require_resource_limits_validator,
        enforcement_level=_MANDATORY,
        severity=Severity.MEDIUM,
    ),
    ResourceValidationPolicy(
        name="no-latest-image",
        description="Container images are pinned to a version tag or digest, never ':latest' or untagged.",
        validate=no_latest_image_validator,
        enforcement_level=_MANDATORY,
        severity=Severity.MEDIUM,
    ),
    ResourceValidationPolicy(
        name="allowed-registries",
        description="Container images come only from the registries the target cluster allows.",
        validate=allowed_registries_validator,
        enforcement_level=_MANDATORY,
        config_schema=TARGET_CONFIG_SCHEMA,
        severity=Severity.HIGH,
    ),
    ResourceValidationPolicy(
        name="allowed-storage-classes",
        description="Volumes name one of the target cluster's storage classes explicitly.",
        validate=allowed_storage_classes_validator,
        enforcement_level=_MANDATORY,
        config_schema=TARGET_CONFIG_SCHEMA,
        severity=Severity.MEDIUM,
    ),
    ResourceValidationPolicy(
        name="no-privileged",
        description=(
            "No privileged containers, privilege escalation, host namespaces or hostPath volumes; "
            "containers run as non-root."
        ),
        validate=no_privileged_validator,
        enforcement_level=_MANDATORY,
        severity=Severity.CRITICAL,
    ),
    StackValidationPolicy(
        name="namespace-default-deny",
        description="Every Namespace in the stack has a default-deny NetworkPolicy for ingress and egress.",
        validate=namespace_default_deny_validator,
        enforcement_level=_MANDATORY,
        severity=Severity.HIGH,
    ),
    ResourceValidationPolicy(
        name="protect-production-state",
        description="In production, StatefulSets, volumes, claims and namespaces are protected from deletion.",
        validate=protect_production_state_validator,
        enforcement_level=_MANDATORY,
        config_schema=TARGET_CONFIG_SCHEMA,
        severity=Severity.CRITICAL,
    ),
    ResourceValidationPolicy(
        name="data-residency",
        description="Production deploys only to clusters in the countries allowed for production.",
        validate=data_residency_validator,
        enforcement_level=_MANDATORY,
        config_schema=TARGET_CONFIG_SCHEMA,
        severity=Severity.CRITICAL,
    ),
    StackValidationPolicy(
        name="prefer-pod-disruption-budget",
        description="Workloads with more than one replica have a PodDisruptionBudget selecting their pods.",
        validate=prefer_pod_disruption_budget_validator,
        enforcement_level=_ADVISORY,
        severity=Severity.LOW,
    ),
    ResourceValidationPolicy(
        name="topology-spread",
        description="Workloads with more than one replica spread their pods across zones.",
        validate=topology_spread_validator,
        enforcement_level=_ADVISORY,
        severity=Severity.LOW,
    ),
]
"""The pack's policies, in the order the engine reports them."""
