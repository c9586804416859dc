"""`smartnation state move ENV --to s3://BUCKET?endpoint=...`: an environment's Pulumi state and
secrets into another self-managed backend (Monaco's MinIO when a move to Monaco completes).

The source is the backend the CLI uses (PULUMI_BACKEND_URL, else the cache's file backend) under
its passphrase (`make env`'s rules); the target passphrase is SMARTNATION_TARGET_PASSPHRASE (or
SMARTNATION_TARGET_PASSPHRASE_FILE). Every check runs before anything is touched:
the environment, the URL, both passphrases, the source's stack (there, not pending operations,
not locked, not moved already), the target (reachable, the project layout, no such stack yet).

Then, holding the stack's lock in the source (state_marker):
1. every object of the stack (checkpoint, backups, history entries and their checkpoints) is
   read, and every secret in them and in the stack config file is re-encrypted under the target
   passphrase by the engine (state_secrets); no old ciphertext or salt may remain;
2. the objects are written to the target (the checkpoint last), the stack config file
   (environments/stacks/Pulumi.<env>.yaml) is rewritten with the new salt and values;
3. against the target: the history has as many entries as before, every secret decrypts, and a
   preview with the policy pack shows no change. Only then is the move done: the source gets
   its mark (refuses updates, names the target), the audit log an entry.
A failure in 1-3 puts everything back (the config file, the target's objects, the lock).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pulumi import automation as auto

from smartnation.cli import exit_codes
from smartnation.cli.audit_log import APPLIED, FAILED, REFUSED, AuditEntry, append_audit, operator, utc_now
from smartnation.cli.console import stream_to
from smartnation.cli.interrupted import pending_operations
from smartnation.cli.locks import StackLocked
from smartnation.cli.policy import policy_args
from smartnation.cli.state_marker import holders, mark_moved, moved_mark, take_lock
from smartnation.cli.state_secrets import (
    EngineCrypter,
    SecretsError,
    collect,
    config_file_values,
    dump_object,
    parse_object,
    reencrypt,
    rewrite,
    rewrite_config_file,
)
from smartnation.cli.state_store import (
    META,
    PROJECT_LAYOUT,
    StackObjects,
    StateStore,
    StoreError,
    layout_version,
    open_store,
    redacted,
)
from smartnation.cli.workspace import tool_environment, workspace_options
from smartnation.paths import STACKS_DIR, environments_dir, project_dir
from smartnation.settings import Settings, SettingsError, load_settings
from smartnation.settings.yaml_files import read_yaml
from smartnation.tooling.toolchain.env import BACKEND, LOCAL_PASSPHRASE, PASSPHRASE, PASSPHRASE_FILE
from smartnation.tooling.toolchain.file_backend import folder

log = logging.getLogger("smartnation")

TARGET_PASSPHRASE = "SMARTNATION_TARGET_PASSPHRASE"
TARGET_PASSPHRASE_FILE = "SMARTNATION_TARGET_PASSPHRASE_FILE"


class MoveRefused(Exception):
    """A check failed before anything was touched, or the move failed and was put back."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Plan:
    """What the checks established: where from, where to, under which passphrases."""

    environment: str
    settings: Settings
    objects: StackObjects
    source: StateStore
    target: StateStore
    source_env: Mapping[str, str]
    target_env: Mapping[str, str]
    source_passphrase: str
    target_passphrase: str
    config_file: Path


def _passphrase(value: str | None, file: str | None, shown: str) -> str | None:
    if value:
        return value
    if file:
        try:
            return Path(file).expanduser().read_text(encoding="utf-8").strip()
        except OSError as error:
            raise SettingsError(f"${shown}_FILE", file, f"cannot read the passphrase file: {error.strerror}") from None
    return None


def target_passphrase(environ: Mapping[str, str] = os.environ) -> str:
    given = _passphrase(environ.get(TARGET_PASSPHRASE), environ.get(TARGET_PASSPHRASE_FILE), TARGET_PASSPHRASE)
    if not given:
        raise SettingsError(
            f"${TARGET_PASSPHRASE}",
            "<unset>",
            f"the target backend's passphrase is needed to re-encrypt the stack's secrets: set {TARGET_PASSPHRASE} "
            f"(or {TARGET_PASSPHRASE_FILE}) to the passphrase its stacks will be opened with",
        )
    return given


def _same_backend(a: str, b: str) -> bool:
    def norm(url: str) -> str:
        if url.startswith("file://"):
            return "file://" + str((folder(url) or Path()).resolve())
        return url.rstrip("/")

    return norm(a) == norm(b)


def _project_name() -> str:
    return str(read_yaml(project_dir() / "Pulumi.yaml")["name"])


def check(environment: str, to: str) -> Plan:
    """Every check, nothing touched; MoveRefused (or SettingsError) naming what is wrong."""
    settings = load_settings(environment)  # an unknown environment names its file
    source_env = tool_environment(environment)  # no source passphrase: PassphraseMissing
    source_url = source_env[BACKEND]
    if not (to.startswith("s3://") or to.startswith("file://")):
        raise MoveRefused(
            f"--to {to!r}: expected the target backend as s3://BUCKET?endpoint=HOST:PORT&...", exit_codes.BAD_INPUT
        )
    if _same_backend(source_url, to):
        raise MoveRefused(f"--to {redacted(to)} is the backend the stack is in already", exit_codes.BAD_INPUT)
    new = target_passphrase()
    old = _passphrase(source_env.get(PASSPHRASE), source_env.get(PASSPHRASE_FILE), "PULUMI_CONFIG_PASSPHRASE")
    if not old:
        raise SettingsError(f"${PASSPHRASE}", "<unset>", "the source stack's passphrase is needed to decrypt it")
    if new == LOCAL_PASSPHRASE:
        raise SettingsError(
            f"${TARGET_PASSPHRASE}", "<local default>", "is the local clusters' public passphrase: it protects nothing"
        )
    if new == old:
        raise SettingsError(
            f"${TARGET_PASSPHRASE}",
            "<same as the source's>",
            "equals the source's passphrase: the move re-encrypts under the target's own passphrase",
        )
    config_file = environments_dir() / STACKS_DIR / f"Pulumi.{environment}.yaml"
    if not config_file.is_file():
        raise MoveRefused(
            f"{config_file}: no stack config file; the stack's salt and secrets are there (run the move where "
            "the stack was deployed from)",
            exit_codes.BAD_INPUT,
        )
    target_env = {**source_env, BACKEND: to, PASSPHRASE: new}
    target_env.pop(PASSPHRASE_FILE, None)
    objects = StackObjects(_project_name(), environment)
    try:
        source = open_store(source_url, source_env)
        target = open_store(to, target_env)
    except StoreError as error:
        raise MoveRefused(str(error), exit_codes.BAD_INPUT) from None
    _check_source(environment, source, objects)
    _check_target(environment, target, objects)
    return Plan(environment, settings, objects, source, target, source_env, target_env, old, new, config_file)


def _check_source(environment: str, source: StateStore, objects: StackObjects) -> None:
    try:
        version = layout_version(source)
        if version != PROJECT_LAYOUT:
            raise MoveRefused(
                f"source {redacted(source.url)}: {META} says layout version {version}, expected "
                f"{PROJECT_LAYOUT} (stacks per project); `pulumi state upgrade` converts it",
                exit_codes.BAD_INPUT,
            )
        if not objects.has_checkpoint(source):
            raise MoveRefused(
                f"source {redacted(source.url)} has no stack {objects.project}/{environment}",
                exit_codes.STACK_NOT_FOUND,
            )
        moved = moved_mark(source, objects)
        if moved is not None:
            raise MoveRefused(moved.refusal(environment), exit_codes.BAD_INPUT)
        locked = holders(source, objects)
        if locked:
            listed = "; ".join(h.describe() for h in locked)
            raise MoveRefused(f"the stack {environment!r} is locked: {listed}", exit_codes.STACK_LOCKED)
        parsed = parse_object(objects.checkpoint, source.read(objects.checkpoint) or b"")
        latest = ((parsed[0] if parsed else {}).get("checkpoint") or {}).get("latest") or {}
        pending = pending_operations(latest)
        if pending:
            listed = ", ".join(p.describe() for p in pending[:8])
            raise MoveRefused(
                f"the stack {environment!r} has {len(pending)} pending operation(s) an interrupted update left "
                f"({listed}); `smartnation up {environment} --recover` first",
                exit_codes.INTERRUPTED,
            )
    except StoreError as error:
        raise MoveRefused(f"source: {error}", exit_codes.FAILED) from None


def _check_target(environment: str, target: StateStore, objects: StackObjects) -> None:
    try:
        target.check()
        version = layout_version(target)
        if version not in (None, PROJECT_LAYOUT):
            raise MoveRefused(
                f"target {redacted(target.url)}: {META} says layout version {version}, expected {PROJECT_LAYOUT}",
                exit_codes.BAD_INPUT,
            )
        if objects.has_checkpoint(target):
            raise MoveRefused(
                f"target {redacted(target.url)} already has the stack {objects.project}/{environment}; nothing was "
                "copied (remove it there first if it is a leftover)",
                exit_codes.BAD_INPUT,
            )
    except StoreError as error:
        raise MoveRefused(f"cannot reach the target backend: {error}", exit_codes.FAILED) from None


@dataclass
class Copied:
    """What the copy wrote, so that a failure can take it back."""

    keys: list[str]
    wrote_meta: bool
    config_before: bytes
    history: int
    secrets: int


def copy_stack(plan: Plan) -> Copied:
    """Steps 1 and 2: re-encrypt every object and the config file, write them to the target."""
    keys = plan.objects.all(plan.source)
    objects: dict[str, bytes] = {}
    parsed = {}
    for key in keys:
        data = plan.source.read(key)
        if data is None:
            raise MoveRefused(f"source object {key} vanished during the move", exit_codes.FAILED)
        objects[key] = data
        value = parse_object(key, data)
        if value is not None:
            parsed[key] = value
    history = sum(1 for key in keys if ".history.json" in key)
    config_before = plan.config_file.read_bytes()
    config_text = config_before.decode("utf-8")
    config = config_file_values(config_text, str(plan.config_file))
    found = collect(value for value, _ in parsed.values())
    collect([config.get("config") or {}], found)
    if isinstance(config.get("encryptionsalt"), str):
        found.salts.add(config["encryptionsalt"])
    log.info(
        "%s: %d object(s) (%d history entries), %d ciphertext(s) to re-encrypt",
        plan.environment,
        len(keys),
        history,
        len(found.ciphertexts),
    )
    with EngineCrypter(plan.source_env) as crypter:
        salt, new = reencrypt(crypter, found, plan.source_passphrase, plan.target_passphrase)
    written: dict[str, bytes] = {}
    for key, data in objects.items():
        if key in parsed:
            value, compressed = parsed[key]
            written[key] = dump_object(rewrite(value, new, salt), compressed)
        else:
            written[key] = data
    new_config = rewrite_config_file(config_text, new, salt).encode("utf-8")
    _check_no_old_secret(written | {str(plan.config_file): new_config}, found.ciphertexts | found.salts)

    copied = Copied(keys=[], wrote_meta=False, config_before=config_before, history=history, secrets=len(new))
    try:
        if layout_version(plan.target) is None:
            plan.target.write(META, f"version: {PROJECT_LAYOUT}\n".encode())
            copied.wrote_meta = True
        # The checkpoint last: until it is there, the target has no such stack.
        order = sorted(written, key=lambda k: (k == plan.objects.checkpoint, k))
        for number, key in enumerate(order, start=1):
            plan.target.write(key, written[key])
            copied.keys.append(key)
            if number % 50 == 0 or number == len(order):
                log.info(
                    "%s: copied %d/%d object(s) to %s", plan.environment, number, len(order), redacted(plan.target.url)
                )
        # A copy of the file as it was, for an operator putting back a move killed from here on;
        # removed when the move ends either way (undo, or marked done).
        _replace_file(backup_file(plan), config_before, mode_of=plan.config_file)
        _replace_file(plan.config_file, new_config)
    except BaseException:
        undo(plan, copied)
        raise
    return copied


def _check_no_old_secret(written: Mapping[str, bytes], old: set[str]) -> None:
    """No byte of what is written may still hold an old ciphertext or salt."""
    for key, data in written.items():
        text = data.decode("utf-8", "replace")
        if key.endswith(".gz"):
            import gzip

            text = gzip.decompress(data).decode("utf-8", "replace")
        left = [item for item in old if item in text]
        if left:
            raise SecretsError(f"{key} would still hold {len(left)} value(s) under the old passphrase; nothing written")


def backup_file(plan: Plan) -> Path:
    """Where the config file as it was waits while a move runs (environments/stacks/, never committed)."""
    return plan.config_file.with_name(f"{plan.config_file.name}.before-state-move")


def _replace_file(path: Path, data: bytes, mode_of: Path | None = None) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(data)
    partial.chmod((mode_of or path).stat().st_mode & 0o777)
    os.replace(partial, path)


def undo(plan: Plan, copied: Copied) -> None:
    """Put back what the copy did: the config file, then the target's objects (checkpoint first)."""
    if plan.config_file.read_bytes() != copied.config_before:
        _replace_file(plan.config_file, copied.config_before)
    backup_file(plan).unlink(missing_ok=True)
    for key in sorted(copied.keys, key=lambda k: (k != plan.objects.checkpoint, k)):
        try:
            plan.target.delete(key)
        except StoreError as error:
            log.error("could not remove %s from the target: %s", key, error)
    if copied.wrote_meta:
        try:
            plan.target.delete(META)
        except StoreError as error:
            log.error("could not remove %s from the target: %s", META, error)
    log.warning(
        "%s: the move was taken back: the target holds none of it, the config file is as before", plan.environment
    )


def target_stack(plan: Plan, env: Mapping[str, str] | None = None) -> auto.Stack:
    """The moved stack, opened in the target backend with the target passphrase."""
    opts = workspace_options(environment=plan.environment)
    opts.env_vars = {**(opts.env_vars or {}), **(env or plan.target_env)}
    opts.env_vars.pop(PASSPHRASE_FILE, None)
    return auto.select_stack(stack_name=plan.environment, work_dir=str(project_dir()), opts=opts)


def verify_target(plan: Plan, copied: Copied, history_before: list[auto.UpdateSummary]) -> dict[str, int]:
    """Step 3: history, secrets and a preview without changes, against the target."""
    stack = target_stack(plan)
    history = stack.history(show_secrets=False)
    if _history_key(history) != _history_key(history_before):
        raise MoveRefused(
            f"the target's history has {len(history)} entries, the source's {len(history_before)}: not the same",
            exit_codes.FAILED,
        )
    log.info("%s: history intact in the target (%d entries)", plan.environment, len(history))
    stack.export_stack()  # every secret of the state decrypts under the target passphrase
    stack.get_all_config()  # and every secret of the config file
    log.info("%s: secrets open with the target passphrase; previewing against the target", plan.environment)
    with policy_args(plan.settings) as policy:
        result = stack.preview(color="never", on_output=stream_to(sys.stderr), **policy)
    changes = {op: n for op, n in (result.change_summary or {}).items() if op != "same" and n}
    if changes:
        raise MoveRefused(
            f"the preview against the target shows changes {changes}: the moved stack is not the deployed one",
            exit_codes.FAILED,
        )
    same = (result.change_summary or {}).get("same", 0)
    log.info("%s: preview against the target: no changes (%d resources the same)", plan.environment, same)
    return {"history": len(history), "resources": int(same)}


def _history_key(history: list[auto.UpdateSummary]) -> list[tuple[str, str, str]]:
    return [(h.kind, h.result, str(h.start_time)) for h in history]


def source_history(plan: Plan) -> list[auto.UpdateSummary]:
    opts = workspace_options(environment=plan.environment)
    stack = auto.select_stack(stack_name=plan.environment, work_dir=str(project_dir()), opts=opts)
    return stack.history(show_secrets=False)


def run_move(plan: Plan) -> dict[str, int]:
    """Lock, copy, verify, mark; everything put back on a failure before the mark."""
    started = time.monotonic()
    history_before = source_history(plan)
    lock = take_lock(plan.source, plan.objects, plan.environment)
    log.info("%s: locked in %s; copying to %s", plan.environment, redacted(plan.source.url), redacted(plan.target.url))
    try:
        copied = copy_stack(plan)
        try:
            verified = verify_target(plan, copied, history_before)
        except BaseException:
            undo(plan, copied)
            raise
        mark_moved(plan.source, plan.objects, plan.target.url, operator(project_dir()))
        backup_file(plan).unlink(missing_ok=True)
    finally:
        plan.source.delete(lock)
    return {
        **verified,
        "objects": len(copied.keys),
        "secrets": copied.secrets,
        "seconds": round(time.monotonic() - started, 1),
    }


def _reason(error: Exception) -> str:
    """One line saying why: the engine's last `error:` line, else the error's own last line."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if isinstance(error, auto.CommandError):
        errors = [line for line in lines if line.startswith("error:")]
        lines = errors or lines
    reason = (
        lines[0] if isinstance(error, auto.CommandError) and lines else (lines[-1] if lines else type(error).__name__)
    )
    return reason if len(reason) <= 600 else reason[:600] + "..."


def _audit(environment: str, source: str, target: str, result: str, reason: str, extra: dict) -> None:
    entry = AuditEntry(
        when=utc_now(),
        who=operator(project_dir()),
        source=f"{environment} state in {redacted(source)}",
        target=f"{environment} state in {redacted(target)}",
        result=result,
        reason=reason,
        extra={"operation": "state-move", **extra},
    )
    append_audit(environments_dir(), entry)


def cmd_state_move(args: argparse.Namespace) -> int:
    environment, to = args.environment, args.to
    source_url = os.environ.get(BACKEND, "the cache's file backend")
    try:
        plan = check(environment, to)
        source_url = plan.source.url
    except MoveRefused as refused:
        log.error("state move refused, nothing was touched: %s", refused)
        _audit(environment, source_url, to, REFUSED, str(refused), {})
        return refused.code
    except SettingsError as error:
        log.error("state move refused, nothing was touched: %s", error)
        _audit(environment, source_url, to, REFUSED, str(error), {})
        return exit_codes.BAD_INPUT
    log.info("moving the state of %s from %s to %s", environment, redacted(plan.source.url), redacted(plan.target.url))
    try:
        done = run_move(plan)
    except StackLocked as error:
        log.error("state move refused, nothing was touched: %s", error)
        _audit(environment, source_url, to, REFUSED, str(error), {})
        return exit_codes.STACK_LOCKED
    except (MoveRefused, SecretsError, StoreError, auto.CommandError) as error:
        reason = _reason(error)
        log.error("state move failed and was taken back: %s", reason)
        _audit(environment, source_url, to, FAILED, reason, {})
        return error.code if isinstance(error, MoveRefused) else exit_codes.FAILED
    _audit(environment, source_url, to, APPLIED, "history, secrets and a preview without changes checked", done)
    print(
        f"state move {environment}: done in {done['seconds']}s: {done['objects']} object(s), "
        f"{done['history']} history entries, {done['secrets']} secret(s) re-encrypted, preview without changes.\n"
        f"From now on: PULUMI_BACKEND_URL={redacted(plan.target.url)} with the target passphrase as "
        f"PULUMI_CONFIG_PASSPHRASE; {redacted(plan.source.url)} keeps a read-only copy that refuses updates."
    )
    return exit_codes.OK


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("state", help="an environment's Pulumi state (move it to another backend)")
    actions = parser.add_subparsers(dest="state_command", required=True)
    move = actions.add_parser(
        "move",
        help="copy an environment's stack, history and secrets into another backend, re-encrypted "
        f"(target passphrase: ${TARGET_PASSPHRASE}), preview it without changes, mark the source moved",
    )
    move.add_argument("environment")
    move.add_argument(
        "--to", required=True, metavar="URL", help="the target backend: s3://BUCKET?endpoint=HOST:PORT&..."
    )
    move.set_defaults(func=cmd_state_move)
