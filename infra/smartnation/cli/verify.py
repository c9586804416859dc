"""`smartnation verify ENV [--check NAME ...] [--skip NAME ...] [--reading-bound SECONDS]`:
the post-deploy smoke suite, against a deployed environment on any site.

The bound a reading must meet is the environment's own (`verify.reading_bound_seconds`, 10 s in
environments/defaults.yaml); `--reading-bound` overrides it for one run.

Everything comes from the stack (its outputs, its secrets, the device classes of its settings)
and the cluster (kubectl with the context of the cluster the stack was deployed to). One line per
check (PASS/FAIL, name, seconds, what it saw), a summary, exit code 0 only when every selected
check passed; the time of the last pass is recorded on the namespace (health.py says why there)
and shown by `smartnation status`.
"""

from __future__ import annotations

import argparse
import logging
import secrets
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TextIO

from smartnation.cli import exit_codes
from smartnation.cli.audit_log import utc_now
from smartnation.cli.health import record_verify
from smartnation.cli.kubectl import Kubectl, KubectlError
from smartnation.cli.verify_checks import (
    CheckFailed,
    VerifyContext,
    check_backup_restores,
    check_broker_acl,
    check_broker_auth,
    check_broker_publish,
    check_device_command,
    check_network_policy_allows,
    check_network_policy_denies,
    check_open_data,
    check_pod_security,
    check_registry_refuses_anonymous,
    check_workloads,
)
from smartnation.cli.verify_target import class_password, mqtt_plan, operator_token, target_from_outputs
from smartnation.cli.workspace import select, tool_environment
from smartnation.settings import SettingsError, load_cluster_profile

log = logging.getLogger("smartnation")

DEFAULT_SUBSCRIBER_CLASS = "telemetry-ingest"
"""The class whose credentials listen in the broker checks: the telemetry consumer's."""


@dataclass(frozen=True)
class Check:
    name: str
    """What `--check`/`--skip` take and the report shows."""
    run: Callable[[VerifyContext], str]
    limit: float
    """Seconds the check may take in all; past it, it fails (its own waits are shorter)."""
    plus_bound: bool = False
    """Whether it waits for a reading or a command: its limit grows by --reading-bound."""
    plus_settle: bool = False
    """Whether it waits for the workloads to settle: its limit grows by --settle."""


CHECKS: tuple[Check, ...] = (
    Check("workloads-ready", check_workloads, 30, plus_settle=True),
    Check("pods-non-root-read-only", check_pod_security, 120),
    Check("broker-tls-publish", check_broker_publish, 30),
    Check("reading-in-open-data-api", check_open_data, 60, plus_bound=True),
    Check("broker-acl-other-device-topic", check_broker_acl, 90, plus_bound=True),
    Check("broker-refuses-passwords", check_broker_auth, 30),
    Check("device-command", check_device_command, 60, plus_bound=True),
    Check("registry-refuses-anonymous", check_registry_refuses_anonymous, 30),
    Check("network-policy-denies", check_network_policy_denies, 60),
    Check("network-policy-allows", check_network_policy_allows, 60),
    Check("backup-restores", check_backup_restores, 600),
)
"""In the order they run: the publish check leaves the reading the open-data check looks for;
the backup runs last, after the checks that write (its comparison wants nothing written meanwhile)."""


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    seconds: float
    detail: str


def select_checks(checks: Sequence[Check], only: Sequence[str] = (), skip: Sequence[str] = ()) -> list[Check]:
    """The checks to run, in their own order: ``only`` (all when empty) less ``skip``."""
    known = {c.name for c in checks}
    unknown = sorted({*only, *skip} - known)
    if unknown:
        raise SettingsError("--check/--skip", unknown[0], f"unknown check; known: {', '.join(c.name for c in checks)}")
    chosen = [c for c in checks if (not only or c.name in only) and c.name not in skip]
    if not chosen:
        raise SettingsError("--check/--skip", ",".join(skip), "leaves no check to run")
    return chosen


def run_check(check: Check, ctx: VerifyContext, clock: Callable[[], float] = time.monotonic) -> CheckResult:
    """Run one check in a thread bounded by its limit; any exception is its failure.

    A check past its limit is reported failed and left to end on its own (a daemon thread: its
    kubectl and MQTT calls have their own timeouts)."""
    limit = check.limit + (getattr(ctx, "reading_bound", 0) if check.plus_bound else 0)
    limit += getattr(ctx, "settle", 0) if check.plus_settle else 0
    outcome: dict[str, tuple[bool, str]] = {}

    def target() -> None:
        try:
            outcome["result"] = (True, check.run(ctx))
        except CheckFailed as error:
            outcome["result"] = (False, str(error))
        except Exception as error:  # noqa: BLE001 - a check's own bug is its failure, reported on its line
            outcome["result"] = (False, f"{type(error).__name__}: {error}")

    started = clock()
    worker = threading.Thread(target=target, name=f"verify-{check.name}", daemon=True)
    worker.start()
    worker.join(limit)
    seconds = clock() - started
    if "result" not in outcome:
        return CheckResult(check.name, False, seconds, f"no answer within {limit:g}s")
    passed, detail = outcome["result"]
    return CheckResult(check.name, passed, seconds, detail)


def report_line(result: CheckResult, width: int) -> str:
    verdict = "PASS" if result.passed else "FAIL"
    return f"{verdict}  {result.name.ljust(width)}  {result.seconds:6.1f}s  {result.detail}"


def summary_line(environment: str, results: Sequence[CheckResult], seconds: float) -> str:
    failed = [r.name for r in results if not r.passed]
    passed = len(results) - len(failed)
    text = f"verify {environment}: {passed}/{len(results)} passed in {seconds:.1f}s"
    return text + (f"; FAILED: {', '.join(failed)}" if failed else "")


def exit_code(results: Sequence[CheckResult]) -> int:
    return exit_codes.OK if results and all(r.passed for r in results) else exit_codes.FAILED


def run_checks(checks: Sequence[Check], ctx: VerifyContext, out: TextIO) -> list[CheckResult]:
    """Run ``checks`` in order, printing each line as it finishes."""
    width = max(len(c.name) for c in checks)
    results = []
    for check in checks:
        result = run_check(check, ctx)
        results.append(result)
        out.write(report_line(result, width) + "\n")
        out.flush()
    return results


def build_context(args: argparse.Namespace) -> VerifyContext:
    """Everything the checks read, from the stack and the cluster profile it was deployed to."""
    environment = args.environment
    stack, settings = select(environment, create=False)
    outputs = {key: value.value for key, value in stack.outputs().items()}
    target = target_from_outputs(environment, outputs)
    # Where the stack went, not where the files now say it goes.
    profile = settings.cluster if settings.cluster.name == target.cluster else load_cluster_profile(target.cluster)
    kubectl = Kubectl(profile.context, target.namespace, env=tool_environment(environment))
    device_id = f"smartnation-verify-{secrets.token_hex(4)}"
    plan = mqtt_plan(settings.broker.device_classes, device_id, args.subscriber_class, args.device_class)
    config = stack.get_all_config()
    # Devices log in with certificates (issued during the run); the subscriber's password is
    # what the public listener must refuse.
    passwords = {plan.subscriber_class: class_password(environment, config, plan.subscriber_class)}
    bound = reading_bound(args.reading_bound, settings.verify.reading_bound_seconds)
    settle = settings.verify.settle_seconds if args.settle is None else args.settle
    token = operator_token(environment, config)
    return VerifyContext(
        target, kubectl, plan, device_id, passwords, reading_bound=bound, settle=settle, operator_token=token
    )


def reading_bound(option: float | None, stated: float) -> float:
    """`--reading-bound` when given, else the environment's `verify.reading_bound_seconds`."""
    return stated if option is None else option


def cmd_verify(args: argparse.Namespace) -> int:
    checks = select_checks(CHECKS, args.check or (), args.skip or ())
    log.info("verifying %s ...", args.environment)
    ctx = build_context(args)
    log.info(
        "%s: namespace %s on %s, broker %s:%d, device %s (%s), reading bound %gs",
        args.environment,
        ctx.target.namespace,
        ctx.kubectl.context,
        ctx.target.mqtt_address,
        ctx.target.mqtt_port,
        ctx.device_id,
        ctx.plan.device_class,
        ctx.reading_bound,
    )
    started = time.monotonic()
    try:
        results = run_checks(checks, ctx, sys.stdout)
    finally:
        ctx.retire_identities()  # verify leaves no device certificate behind
    sys.stdout.write(summary_line(args.environment, results, time.monotonic() - started) + "\n")
    code = exit_code(results)
    if not args.no_record:
        try:
            passed = sum(r.passed for r in results)
            # A pass of a subset is not a pass of the environment: only a full run records one.
            record_verify(ctx.kubectl, utc_now(), passed, len(results), complete=len(checks) == len(CHECKS))
        except KubectlError as error:
            log.warning("could not record the result on namespace %s: %s", ctx.target.namespace, error)
    return code


def _positive(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more seconds")
    return value


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("verify", help="smoke-test a deployed environment (exit 1 if any check fails)")
    parser.add_argument("environment", metavar="ENV")
    parser.add_argument("--check", action="append", metavar="NAME", help="run only these checks (repeatable)")
    parser.add_argument("--skip", action="append", metavar="NAME", help="leave these checks out (repeatable)")
    parser.add_argument(
        "--reading-bound",
        type=_positive,
        default=None,
        metavar="SECONDS",
        help="how long a reading may take to reach open-data-api "
        "(default: the environment's verify.reading_bound_seconds)",
    )
    parser.add_argument(
        "--settle",
        type=_positive,
        default=None,
        metavar="SECONDS",
        help="how long the workloads may take to become ready (default: the environment's verify.settle_seconds)",
    )
    parser.add_argument("--device-class", help="the sensor class to publish as (default: the first that can)")
    parser.add_argument(
        "--subscriber-class",
        default=DEFAULT_SUBSCRIBER_CLASS,
        help="the internal class that hears the readings; its password must be refused on the TLS listener",
    )
    parser.add_argument("--no-record", action="store_true", help="do not record the result on the namespace")
    parser.set_defaults(func=cmd_verify)
