"""`smartnation`: the operations CLI (Pulumi Automation API).

    smartnation up ENV [--yes]            deploy an environment (engineers, CI for dev/staging)
    smartnation destroy ENV [--yes]       remove an environment's resources
    smartnation secrets init ENV          generate every missing secret into the stack file
    smartnation outputs ENV               print an environment's stack outputs
    smartnation preview [--base REF] [--output FILE] [ENV ...]
                                          what a change would do to the environments it affects
    smartnation promote SOURCE TARGET [--yes] [--apply] [--allow-stateful-changes]
                                          copy SOURCE's releases into TARGET's file, after gates
    smartnation status [ENV ...] [--json] what runs where, last update, drift
    smartnation audit [--last N]          the promotions recorded in environments/audit/

Exit codes are in smartnation.cli.exit_codes; docs/operations.md explains each.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable

from pulumi import automation as auto

from smartnation.cli import engine, exit_codes, preview, promote, status
from smartnation.cli.console import confirm, stream_to
from smartnation.cli.workspace import environments_dir, select
from smartnation.settings import SettingsError
from smartnation.settings.stack_secrets import CONFIG_NAMESPACE, generate_missing

log = logging.getLogger("smartnation")


def init_secrets(stack: auto.Stack, environment: str) -> list[str]:
    """Writes a random value for every required secret the stack file lacks; returns the keys."""
    existing = stack.get_all_config().keys()
    generated = generate_missing(environment, existing)
    if generated:
        stack.set_all_config(
            {
                f"{CONFIG_NAMESPACE}:{key}": auto.ConfigValue(value=value, secret=True)
                for key, value in generated.items()
            }
        )
    return sorted(generated)


def cmd_secrets(args: argparse.Namespace) -> int:
    stack, _ = select(args.environment)
    keys = init_secrets(stack, args.environment)
    log.info("%s: %d secret(s) generated%s", args.environment, len(keys), (": " + ", ".join(keys)) if keys else "")
    return exit_codes.OK


def cmd_up(args: argparse.Namespace) -> int:
    stack, settings = select(args.environment)
    if args.init_secrets:
        init_secrets(stack, args.environment)
    log.info("deploying %s to %s", args.environment, settings.cluster.name)
    if not confirm(f"Deploy {args.environment} to {settings.cluster.name}?", args.yes):
        return exit_codes.ABORTED
    # The guardrails run on every update, as on every preview (policy/README.md).
    with engine.policy_args(settings, environments_dir()) as policy:
        result = stack.up(on_output=stream_to(sys.stdout), color="never", **policy)
    log.info("%s: %s", args.environment, json.dumps(result.summary.resource_changes or {}))
    _print_outputs(stack)
    return exit_codes.OK


def cmd_destroy(args: argparse.Namespace) -> int:
    stack, settings = select(args.environment, create=False)
    if not confirm(f"Destroy every resource of {args.environment} on {settings.cluster.name}?", args.yes):
        return exit_codes.ABORTED
    stack.destroy(on_output=stream_to(sys.stdout), color="never")
    return exit_codes.OK


def cmd_outputs(args: argparse.Namespace) -> int:
    stack, _ = select(args.environment, create=False)
    _print_outputs(stack)
    return exit_codes.OK


def _print_outputs(stack: auto.Stack) -> None:
    outputs = {k: ("[secret]" if v.secret else v.value) for k, v in stack.outputs().items()}
    print(json.dumps(outputs, indent=2, sort_keys=True))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smartnation", description="Operate the Smart Nation platform stacks")
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="deploy an environment")
    up.add_argument("environment")
    up.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    up.add_argument(
        "--init-secrets",
        action="store_true",
        help="first generate every missing secret (local clusters and fresh sites)",
    )
    up.set_defaults(func=cmd_up)

    destroy = sub.add_parser("destroy", help="remove an environment's resources")
    destroy.add_argument("environment")
    destroy.add_argument("--yes", action="store_true")
    destroy.set_defaults(func=cmd_destroy)

    secrets = sub.add_parser("secrets", help="manage an environment's secrets")
    secrets_sub = secrets.add_subparsers(dest="action", required=True)
    init = secrets_sub.add_parser("init", help="generate every missing secret into the stack file")
    init.add_argument("environment")
    init.set_defaults(func=cmd_secrets)

    outputs = sub.add_parser("outputs", help="print an environment's stack outputs")
    outputs.add_argument("environment")
    outputs.set_defaults(func=cmd_outputs)

    preview.add_parser(sub)
    promote.add_parsers(sub)
    status.add_parser(sub)
    return parser


def run(args: argparse.Namespace, handler: Callable[[argparse.Namespace], int]) -> int:
    try:
        return handler(args)
    except SettingsError as exc:
        log.error("%s", exc)
        return exit_codes.BAD_INPUT
    except auto.ConcurrentUpdateError as exc:
        log.error("the stack is locked by another update: %s", str(exc).strip().splitlines()[-1])
        return exit_codes.STACK_LOCKED
    except engine.StackLocked as exc:
        log.error("%s; wait for it to finish and retry", exc)
        return exit_codes.STACK_LOCKED
    except auto.StackNotFoundError:
        name = getattr(args, "environment", None) or getattr(args, "source", None)
        log.error("environment %r has no stack in this backend yet: deploy it first", name)
        return exit_codes.STACK_NOT_FOUND
    except auto.CommandError as exc:
        text = str(exc)
        if "mandatory policy violation" in text.lower() or "policy violations" in text.lower():
            log.error("a mandatory policy failed; see the violations above")
            return exit_codes.POLICY_VIOLATION
        log.error("pulumi failed: %s", text.strip().splitlines()[-1] if text.strip() else text)
        return exit_codes.FAILED


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="smartnation: %(message)s", stream=sys.stderr)
    parser = build_parser()
    args = parser.parse_args(argv)
    return run(args, args.func)


if __name__ == "__main__":
    sys.exit(main())
