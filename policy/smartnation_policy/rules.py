"""The guardrails: one `<rule>_validator` function per rule, then the policies that run them.

Validators take the engine's arguments (`ResourceValidationArgs` or `StackValidationArgs`) and a
`report_violation` callback, so the unit tests call them directly with small fakes. Every message
names the resource and, for pod specs, the container, and says what to do instead.

Mandatory rules block a deployment; the advisory ones are judgment calls that a reviewer weighs.
Resources that a `kubernetes:helm.sh/v4:Chart` renders reach the pack as the plain Kubernetes
resources they are, so third-party charts are held to the same rules.
"""

from __future__ import annotations

import base64
import ipaddress
import re
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

from smartnation_policy import plaintext
from smartnation_policy.plaintext import is_secret_name
from smartnation_policy.residency import production_allowed_in, residency_refusal
from smartnation_policy.target import TARGET_CONFIG_SCHEMA, Target
from smartnation_policy.workloads import (
    CONFIG_MAP_TYPE,
    NAMESPACE_TYPE,
    NETWORK_POLICY_TYPE,
    PDB_TYPE,
    PV_TYPE,
    PVC_TYPE,
    REPLICATED_TYPES,
    SERVICE_TYPE,
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


KUBERNETES_PROVIDER_TYPE = "pulumi:providers:kubernetes"


def _provider_context(args: ResourceValidationArgs) -> str | None:
    """The kubeconfig context of the Kubernetes provider the resource is deployed through.

    Why the context, and not the provider's name or URN: the context is what decides where the
    provider applies objects (the program sets it from the cluster profile's `context`,
    components/providers.py), whereas a provider's Pulumi name is a label anyone may choose. The
    config carries each cluster's context (`context`, `move.to.context`), so the pack needs no
    mapping of its own. None for a resource with no Kubernetes provider (none handed over, or
    another package's): judged against the environment's own cluster, as before moves existed.
    """
    provider = args.provider
    if provider is None or provider.resource_type != KUBERNETES_PROVIDER_TYPE:
        return None
    context = dig(provider.props, "context")
    # A Kubernetes provider without a context uses the kubeconfig's current one, which no
    # profile names: "" is judged (refused) as a context of no cluster of the stack.
    return context if isinstance(context, str) else ""


def _target_of(args: ResourceValidationArgs, report_violation: ReportViolation) -> Target | None:
    """The target of the cluster the resource is deployed to (its provider's context): the
    environment's own, or during a move the cluster it moves to. A resource on any other cluster
    is refused here (None): the pack cannot judge it against a cluster it was not told about."""
    target = Target.from_config(args.get_config())
    context = _provider_context(args)
    judged = target.on_context(context)
    if judged is None:
        known = [f"'{target.context}' (cluster '{target.cluster}')"]
        if target.move is not None:
            known.append(f"'{target.move.to.context}' (cluster '{target.move.to.cluster}', the move's target)")
        report_violation(
            f"{_subject(args)} is deployed through provider '{args.provider.name}' to kubeconfig context "
            f"'{context or '(the current one)'}', which is not a cluster of this stack ({' or '.join(known)}); "
            "deploy it through the provider of one of those clusters.",
            None,
        )
    return judged


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


# --- images-by-digest ---------------------------------------------------------------------------

# A name, then one digest at the end: `@sha256:` and 64 lowercase hex digits (a tag before it is
# allowed, the runtime ignores it).
_BY_DIGEST = re.compile(r"[^@\s]+@sha256:[0-9a-f]{64}")


def images_by_digest_validator(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Every container image is named by its manifest digest (`<registry>/<repository>@sha256:<64 hex>`).

    A tag is a name someone can move: a digest is the bytes `make images` built and the tests ran,
    so a pod restarted next month runs the same image, and both sites run the same one. The
    program takes each digest from the build (environments/images.lock.yaml), never from a person.
    """
    spec = pod_spec(args.resource_type, args.props)
    if spec is None:
        return
    for container in containers(spec):
        image = container.spec.get("image")
        if not isinstance(image, str) or not image:
            continue  # no-latest-image reports a missing image
        if not _BY_DIGEST.fullmatch(image):
            report_violation(
                f"{_subject(args)}: {container} image '{image}' is not referenced by digest; name it "
                "<registry>/<repository>@sha256:<64 hex digits>, the digest the image build wrote in "
                "environments/images.lock.yaml.",
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
    # The cluster the object lands on: during a move, Monaco's standby pulls from Monaco's mirror.
    target = _target_of(args, report_violation)
    if target is None:
        return
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
    target = _target_of(args, report_violation)
    if target is None:
        return
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
    Each object is judged by the country of the cluster it lands on (during a move, the target's).
    """
    target = _target_of(args, report_violation)
    if target is None:
        return
    if target.is_production and not production_allowed_in(target.country, target.production_countries):
        report_violation(
            f"{_subject(args)}: {residency_refusal(target.cluster, target.country, target.production_countries)}.",
            None,
        )


# --- no-added-capabilities ----------------------------------------------------------------------

# The one capability the restricted Pod Security profile lets a container add back: binding a
# port below 1024. Everything else widens what a compromised process can do to the node.
_ADDABLE_CAPABILITIES = frozenset({"NET_BIND_SERVICE"})


def no_added_capabilities_validator(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Every container drops ALL capabilities and adds none back but NET_BIND_SERVICE.

    `no-privileged` refuses the root-equivalent ones outright; this is the restricted profile's
    rule, so that a NET_ADMIN or SYS_PTRACE slipped into one container is caught before the
    namespace's admission refuses the pod at 3 a.m.
    """
    spec = pod_spec(args.resource_type, args.props)
    if spec is None:
        return
    for container in containers(spec):
        capabilities = dig(container.spec, "securityContext", "capabilities") or {}
        added = sorted({str(c).upper().removeprefix("CAP_") for c in items(dig(capabilities, "add"))})
        extra = [c for c in added if c not in _ADDABLE_CAPABILITIES]
        dropped = {str(c).upper() for c in items(dig(capabilities, "drop"))}
        problems = []
        if extra:
            problems.append(f"adds capabilities {extra}")
        if "ALL" not in dropped:
            problems.append("does not drop ALL capabilities")
        if problems:
            report_violation(
                f"{_subject(args)}: {container} {' and '.join(problems)}; set securityContext.capabilities "
                "to drop: [ALL] and add at most NET_BIND_SERVICE.",
                None,
            )


# --- require-seccomp-profile --------------------------------------------------------------------

_CONFINING_SECCOMP = ("RuntimeDefault", "Localhost")


def require_seccomp_profile_validator(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Every container runs under a seccomp profile (RuntimeDefault or Localhost), set on the pod
    or on the container; an absent profile means Unconfined on most runtimes.

    seccomp is what stands between a container escape bug in the kernel's syscall surface and the
    node that also runs the city's broker and database.
    """
    spec = pod_spec(args.resource_type, args.props)
    if spec is None:
        return
    pod_type = dig(spec, "securityContext", "seccompProfile", "type")
    for container in containers(spec):
        # The container's own setting wins over the pod's, as in Kubernetes.
        profile = dig(container.spec, "securityContext", "seccompProfile", "type") or pod_type
        if profile not in _CONFINING_SECCOMP:
            found = f"seccompProfile {profile}" if profile else "no seccompProfile"
            report_violation(
                f"{_subject(args)}: {container} runs with {found}; set securityContext.seccompProfile.type "
                "to RuntimeDefault on the pod (or Localhost with a reviewed profile).",
                None,
            )


# --- read-only-root-filesystem ------------------------------------------------------------------


def read_only_root_filesystem_validator(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Every container mounts its root filesystem read-only; what it must write goes to a volume.

    An attacker who gets code execution cannot then drop tools into the image's filesystem, and
    nothing the daemon writes is lost silently on restart because it lived in the container layer.
    """
    spec = pod_spec(args.resource_type, args.props)
    if spec is None:
        return
    for container in containers(spec):
        if dig(container.spec, "securityContext", "readOnlyRootFilesystem") is not True:
            report_violation(
                f"{_subject(args)}: {container} has a writable root filesystem; set "
                "securityContext.readOnlyRootFilesystem: true and mount an emptyDir or a claim where it writes.",
                None,
            )


# --- no-plaintext-secrets -----------------------------------------------------------------------


def _known(read: Any) -> tuple[bool, Any]:
    """(known, value) of a property read that may hit a value unknown during a preview."""
    try:
        return True, read()
    except UnknownValueError:
        return False, None


def no_plaintext_secrets_validator(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """No credential in plain text where anyone who can read the object (or `kubectl describe` the
    pod) sees it: container env `value`s and ConfigMap data. Credentials live in Secrets and reach
    containers through `valueFrom.secretKeyRef`, `envFrom.secretRef` or a mounted Secret.

    The detection is `smartnation_policy.plaintext` (shared with the program's preflight). Values
    not known yet during a preview are judged by their name alone: a key named for a password in a
    ConfigMap is wrong whatever its value turns out to be. Messages never repeat the value.
    """
    subject = _subject(args)
    if args.resource_type == CONFIG_MAP_TYPE:
        for section in ("data", "binaryData"):
            known, entries = _known(lambda section=section: args.props.get(section))
            if not known or not isinstance(entries, Mapping):
                continue
            for key in list(entries):
                known, value = _known(lambda key=key, entries=entries: entries[key])
                if section == "binaryData" and known and isinstance(value, str):
                    value = _decoded(value)
                if not known:
                    findings = [plaintext.Finding(key, "a key named for a credential")] if is_secret_name(key) else []
                elif isinstance(value, str):
                    findings = plaintext.in_config_entry(key, value)
                else:
                    findings = []
                for finding in findings:
                    report_violation(
                        f"{subject}: {section}.{finding}; put credentials in a Secret and mount it or "
                        "reference it with envFrom.secretRef.",
                        None,
                    )
        return
    spec = pod_spec(args.resource_type, args.props)
    if spec is None:
        return
    for container in containers(spec):
        for index, entry in enumerate(items(container.spec.get("env"))):
            name = dig(entry, "name") or f"#{index}"
            # `in` on the engine's proxy reads the value, which may be unknown: test the keys.
            if not isinstance(entry, Mapping) or "value" not in list(entry):
                continue  # valueFrom: the value lives in a Secret or ConfigMap, judged there
            known, value = _known(lambda entry=entry: entry["value"])
            if not known:
                findings = [plaintext.Finding(name, "a credential from a value")] if is_secret_name(name) else []
            elif isinstance(value, str):
                findings = plaintext.in_variable(name, value)
            else:
                findings = []
            for finding in findings:
                report_violation(
                    f"{subject}: {container} env {finding}; read it from a Secret with valueFrom.secretKeyRef instead.",
                    None,
                )


def _decoded(value: str) -> str:
    """binaryData arrives base64-encoded; text is judged like data, anything else is skipped."""
    try:
        return base64.b64decode(value, validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return ""


# --- no-allow-all-network-policy ----------------------------------------------------------------

_EVERYWHERE = ("0.0.0.0/0", "::/0")


def _peer_is_everything(peer: Any) -> bool:
    """A peer that admits every source or destination: any address, or every pod of every namespace."""
    if not isinstance(peer, Mapping):
        return False
    block = peer.get("ipBlock")
    if isinstance(block, Mapping):
        return block.get("cidr") in _EVERYWHERE and not items(block.get("except"))
    namespaces = peer.get("namespaceSelector")
    pods = peer.get("podSelector")
    return _selects_everything(namespaces) and (pods is None or _selects_everything(pods))


def _selects_everything(selector: Any) -> bool:
    return (
        isinstance(selector, Mapping)
        and not dig(selector, "matchLabels")
        and not items(dig(selector, "matchExpressions"))
    )


def no_allow_all_network_policy_validator(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """No NetworkPolicy rule allows all traffic: a rule must name its peers or its ports.

    A rule with neither (`ingress: [{}]`, `egress: [{to: [{ipBlock: {cidr: 0.0.0.0/0}}]}]`) undoes
    the namespace's default deny for the pods it selects, silently, because the default deny is
    still there for `namespace-default-deny` to see. A rule open to every source on one port (the
    broker's device listener) is a decision and passes.
    """
    if args.resource_type != NETWORK_POLICY_TYPE:
        return
    spec = args.props.get("spec")
    if not isinstance(spec, Mapping):
        return
    for direction, peers_key in (("ingress", "from"), ("egress", "to")):
        for index, rule in enumerate(items(spec.get(direction))):
            if not isinstance(rule, Mapping) or items(rule.get("ports")):
                continue
            peers = items(rule.get(peers_key))
            if not peers or any(_peer_is_everything(peer) for peer in peers):
                report_violation(
                    f"{_subject(args)}: {direction}[{index}] allows all traffic (no ports and "
                    f"{'no ' + peers_key if not peers else 'a ' + peers_key + ' peer that matches everything'}); "
                    "name the pods, namespaces or address ranges and the ports it needs.",
                    None,
                )


# --- no-public-data-services --------------------------------------------------------------------

# What identifies the database and the object storage: their ports, the names Kubernetes gives
# those ports, and the app names their pods carry. The pack knows these itself (it runs without
# the program), so a third-party chart's PostgreSQL or MinIO is caught as well as ours.
POSTGRESQL_PORT = 5432
DATA_SERVICE_PORTS: dict[int, str] = {
    POSTGRESQL_PORT: "PostgreSQL",
    9000: "object storage (S3)",
    9001: "object storage console",
}
DATA_SERVICE_PORT_NAMES: dict[str, str] = {
    "postgres": "PostgreSQL",
    "postgresql": "PostgreSQL",
    "s3": "object storage (S3)",
    "minio": "object storage (S3)",
    "console": "object storage console",
}
DATA_SERVICE_APPS: dict[str, str] = {
    "database": "the database",
    "postgres": "the database",
    "postgresql": "the database",
    "timescaledb": "the database",
    "object-storage": "the object storage",
    "minio": "the object storage",
}
_EXPOSING_SERVICE_TYPES = ("LoadBalancer", "NodePort")


def _data_service_reasons(spec: Mapping[str, Any]) -> list[str]:
    reasons = []
    selector = spec.get("selector") if isinstance(spec.get("selector"), Mapping) else {}
    for label in ("app.kubernetes.io/name", "app"):
        app = selector.get(label)
        if isinstance(app, str) and app in DATA_SERVICE_APPS:
            reasons.append(f"selects {DATA_SERVICE_APPS[app]} ({label}={app})")
    for port in items(spec.get("ports")):
        for field in ("port", "targetPort"):
            value = dig(port, field)
            if isinstance(value, int | float) and int(value) in DATA_SERVICE_PORTS:
                reasons.append(f"{field} {int(value)} ({DATA_SERVICE_PORTS[int(value)]})")
            elif isinstance(value, str) and value in DATA_SERVICE_PORT_NAMES:
                reasons.append(f"{field} '{value}' ({DATA_SERVICE_PORT_NAMES[value]})")
        name = dig(port, "name")
        if isinstance(name, str) and name in DATA_SERVICE_PORT_NAMES:
            reasons.append(f"port name '{name}' ({DATA_SERVICE_PORT_NAMES[name]})")
    return list(dict.fromkeys(reasons))


def no_public_data_services_validator(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """No Service of type LoadBalancer or NodePort reaches the database or the object storage.

    Both hold the city's data and answer to passwords alone; they are reached inside the cluster
    through ClusterIP Services that the NetworkPolicies guard. Only the broker's device listener
    and the APIs' ingress face outside.
    """
    if args.resource_type != SERVICE_TYPE:
        return
    spec = args.props.get("spec")
    if not isinstance(spec, Mapping) or spec.get("type") not in _EXPOSING_SERVICE_TYPES:
        return
    reasons = _data_service_reasons(spec)
    if not reasons:
        return
    target = Target.from_config(args.get_config())
    not_admitted = _not_the_moves_publication(args, spec, target)
    if not_admitted is None:
        return
    report_violation(
        f"{_subject(args)} of type {spec.get('type')} exposes a data service outside the cluster "
        f"({'; '.join(reasons)}); make it type ClusterIP and let the NetworkPolicies admit its clients."
        + (f" {not_admitted}" if not_admitted else ""),
        None,
    )


def _networks(values: Any) -> list[str] | None:
    """The CIDRs of `loadBalancerSourceRanges`, normalised and sorted; None if one is not a CIDR."""
    try:
        return sorted(str(ipaddress.ip_network(value, strict=True)) for value in items(values))
    except (TypeError, ValueError):
        return None


def _not_the_moves_publication(args: ResourceValidationArgs, spec: Mapping[str, Any], target: Target) -> str | None:
    """None when the Service is one a move under way publishes a source's data service with
    (docs/move.md, the replicate phase: the database primary, the object storage); otherwise why
    not: "" when no move is declared or the Service is not one of the move's (the rule's message
    says it all), a sentence when it is one of the move's Services but not as the move declares it.

    A move's Service is admitted only on the environment's own cluster (the source), under a name
    the config gives, with that entry's exact selector, as a LoadBalancer on that entry's one port,
    whose `loadBalancerSourceRanges` are exactly the link addresses the move declares: the load
    balancer drops every other source.
    """
    move = target.move
    declared = move.published_named(dig(args.props, "metadata", "name")) if move is not None else None
    if move is None or declared is None:
        return ""
    problems = []
    context = _provider_context(args)
    if context is not None and context != target.context:
        problems.append(f"it is not on the source cluster '{target.cluster}' (context '{context}')")
    if spec.get("type") != "LoadBalancer":
        problems.append(f"its type is {spec.get('type')}, not LoadBalancer")
    selector = spec.get("selector")
    if not isinstance(selector, Mapping) or dict(selector) != dict(declared.selector):
        problems.append(
            f"its selector is {dict(selector) if isinstance(selector, Mapping) else selector!r}, "
            f"not {dict(declared.selector)}"
        )
    ports = [dig(port, "port") for port in items(spec.get("ports"))]
    if not ports or any(not isinstance(port, int | float) or int(port) != declared.port for port in ports):
        what = DATA_SERVICE_PORTS.get(declared.port, "the declared port")
        problems.append(f"its ports are {ports}, not {what}'s {declared.port} alone")
    ranges = spec.get("loadBalancerSourceRanges")
    if _networks(ranges) != sorted(move.source_ranges):
        problems.append(
            f"its loadBalancerSourceRanges are {items(ranges)}, not exactly the move's link addresses "
            f"{list(move.source_ranges)}"
        )
    if not problems:
        return None
    names = ", ".join(f"'{service.name}'" for service in move.published)
    return (
        f"During the move to '{move.to.cluster}' only the published Services {names} as the move declares "
        f"them are admitted, and '{declared.name}' breaks that: {'; '.join(problems)}."
    )


# --- retain-production-claims -------------------------------------------------------------------


def retain_production_claims_validator(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """In production, the volumes that Pulumi's `protect` cannot reach keep their data too.

    A StatefulSet's claims are made by its controller, not by Pulumi, so `protect-production-state`
    keeps the StatefulSet but not them: `persistentVolumeClaimRetentionPolicy` with `Delete` drops a
    claim (and, with the usual reclaim policy, the disk) when the StatefulSet is deleted or scaled
    down. A PersistentVolume that production declares is kept with reclaim policy `Retain`.
    """
    if args.resource_type not in (STATEFULSET_TYPE, PV_TYPE):
        return
    target = Target.from_config(args.get_config())
    if not target.is_production:
        return
    if args.resource_type == STATEFULSET_TYPE:
        policy = dig(args.props, "spec", "persistentVolumeClaimRetentionPolicy") or {}
        deleting = [f"{when}: Delete" for when in ("whenDeleted", "whenScaled") if dig(policy, when) == "Delete"]
        if deleting:
            report_violation(
                f"{_subject(args)} deletes its production claims (persistentVolumeClaimRetentionPolicy "
                f"{', '.join(deleting)}); set both to Retain (the default).",
                None,
            )
    elif dig(args.props, "spec", "persistentVolumeReclaimPolicy") == "Delete":
        report_violation(
            f"{_subject(args)} holds production data with persistentVolumeReclaimPolicy Delete; set it to Retain.",
            None,
        )


# --- namespace-pod-security ---------------------------------------------------------------------

POD_SECURITY_ENFORCE = "pod-security.kubernetes.io/enforce"
POD_SECURITY_LEVEL = "restricted"
# enforce refuses a Pod that breaks the profile; audit records it and warn tells whoever applies
# it, so a Pod a controller would create (a Deployment's template) is flagged at `kubectl apply`.
POD_SECURITY_MODES = ("enforce", "audit", "warn")


def namespace_pod_security_validator(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Every Namespace the stack creates enforces, audits and warns at the restricted Pod Security
    Standard.

    The pack judges what the program declares; the label makes the API server refuse whatever
    reaches the namespace another way (a `kubectl run`, a chart's hook, a debug pod) too.
    """
    if args.resource_type != NAMESPACE_TYPE:
        return
    labels = dig(args.props, "metadata", "labels") or {}
    labels = labels if isinstance(labels, Mapping) else {}
    problems = []
    for mode in POD_SECURITY_MODES:
        label = f"pod-security.kubernetes.io/{mode}"
        level = labels.get(label)
        if level != POD_SECURITY_LEVEL:
            problems.append(f"'{label}: {level}'" if level else f"no '{label}' label")
    if problems:
        wanted = ", ".join(f"'pod-security.kubernetes.io/{mode}: {POD_SECURITY_LEVEL}'" for mode in POD_SECURITY_MODES)
        report_violation(
            f"{_subject(args)} has {', '.join(problems)}; label it {wanted} so the API server "
            "enforces the restricted profile and reports what breaks it.",
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
        name="images-by-digest",
        description="Container images are referenced by digest (@sha256:<64 hex>), the one the image build made.",
        validate=images_by_digest_validator,
        enforcement_level=_MANDATORY,
        severity=Severity.HIGH,
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
    ResourceValidationPolicy(
        name="no-added-capabilities",
        description="Containers drop ALL capabilities and add none back but NET_BIND_SERVICE.",
        validate=no_added_capabilities_validator,
        enforcement_level=_MANDATORY,
        severity=Severity.HIGH,
    ),
    ResourceValidationPolicy(
        name="require-seccomp-profile",
        description="Containers run under the RuntimeDefault (or a Localhost) seccomp profile.",
        validate=require_seccomp_profile_validator,
        enforcement_level=_MANDATORY,
        severity=Severity.HIGH,
    ),
    ResourceValidationPolicy(
        name="read-only-root-filesystem",
        description="Containers mount their root filesystem read-only.",
        validate=read_only_root_filesystem_validator,
        enforcement_level=_MANDATORY,
        severity=Severity.MEDIUM,
    ),
    ResourceValidationPolicy(
        name="no-plaintext-secrets",
        description="No credential in plain text in container env values or ConfigMap data.",
        validate=no_plaintext_secrets_validator,
        enforcement_level=_MANDATORY,
        severity=Severity.CRITICAL,
    ),
    ResourceValidationPolicy(
        name="no-allow-all-network-policy",
        description="No NetworkPolicy rule allows all traffic (no ports and no peers, or peers matching everything).",
        validate=no_allow_all_network_policy_validator,
        enforcement_level=_MANDATORY,
        severity=Severity.HIGH,
    ),
    ResourceValidationPolicy(
        name="no-public-data-services",
        description="No LoadBalancer or NodePort Service exposes the database or the object storage.",
        validate=no_public_data_services_validator,
        enforcement_level=_MANDATORY,
        # The target: during a move it names the published Services the move admits.
        config_schema=TARGET_CONFIG_SCHEMA,
        severity=Severity.CRITICAL,
    ),
    ResourceValidationPolicy(
        name="retain-production-claims",
        description="In production, StatefulSets keep their claims and PersistentVolumes are retained.",
        validate=retain_production_claims_validator,
        enforcement_level=_MANDATORY,
        config_schema=TARGET_CONFIG_SCHEMA,
        severity=Severity.HIGH,
    ),
    ResourceValidationPolicy(
        name="namespace-pod-security",
        description="Every Namespace enforces the restricted Pod Security Standard.",
        validate=namespace_pod_security_validator,
        enforcement_level=_MANDATORY,
        severity=Severity.HIGH,
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
