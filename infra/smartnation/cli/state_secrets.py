"""Re-encrypting a stack's secrets under another passphrase, everywhere they are.

With the passphrase secrets provider every secret is one AES-256-GCM ciphertext (`v1:<nonce>:<data>`)
under a key derived from the passphrase and the stack's salt (`encryptionsalt`, also the
checkpoint's `secrets_providers.state.salt`). They sit in three kinds of places:

- the stack config file (environments/stacks/Pulumi.<env>.yaml): `secure:` values;
- each checkpoint (current, backups, the one beside each history entry): secret values as
  `{"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270", "ciphertext": ...}`;
- each history entry: the config of that update, `secure:` values again.

`pulumi stack change-secrets-provider` rewrites the first two of the current stack only; the
history would keep ciphertexts the old passphrase opens. So the ciphertexts are collected from
every object, decrypted and encrypted by the engine itself (its own crypter, never ours): a
scratch stack whose config file holds them under the old salt is read with
`pulumi config --show-secrets`, and each distinct value is set again with `pulumi config set-all
--secret` on a scratch stack created under the new passphrase, whose fresh salt becomes the
stack's. Values travel on the engine's command line, as `smartnation secrets init` does through
the Automation API; nothing is written to disk in clear.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SECRET_SIG = "4dabf18193072939515e22adb298388d"
"""The key the engine marks a serialized secret with (resource.SigKey)."""
SECRET_SIG_VALUE = "1b47061264138c4ac30d75fd1eb44270"
PASSPHRASE = "passphrase"
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_SCRATCH_NAMESPACE = "smartnation-state-move"
_ARGV_BATCH = 64 * 1024
"""Bytes of values per `config set-all` call (well below the kernel's argument limit)."""


class SecretsError(Exception):
    """The stack's secrets cannot be re-encrypted (wrong passphrase, another provider, a format
    this move does not know)."""


@dataclass
class Found:
    """The ciphertexts and salts found in a stack's objects and config file."""

    ciphertexts: set[str] = field(default_factory=set)
    salts: set[str] = field(default_factory=set)
    other_providers: set[str] = field(default_factory=set)


def parse_object(key: str, data: bytes) -> tuple[Any, bool] | None:
    """(JSON value, gzip-compressed) of a state object; None if it is not JSON (copied as is)."""
    if data.startswith(_ZSTD_MAGIC):
        raise SecretsError(f"{key}: zstd-compressed state is not supported by the state move; save it uncompressed")
    compressed = data.startswith(_GZIP_MAGIC)
    raw = gzip.decompress(data) if compressed else data
    try:
        return json.loads(raw), compressed
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None


def dump_object(value: Any, compressed: bool) -> bytes:
    data = (json.dumps(value, indent=4, ensure_ascii=False) + "\n").encode("utf-8")
    return gzip.compress(data) if compressed else data


def _walk(value: Any, found: Found) -> None:
    if isinstance(value, dict):
        if value.get(SECRET_SIG) == SECRET_SIG_VALUE and isinstance(value.get("ciphertext"), str):
            found.ciphertexts.add(value["ciphertext"])
        if isinstance(value.get("secure"), str) and len(value) == 1:
            found.ciphertexts.add(value["secure"])
        provider = _provider(value)
        if provider is not None:
            kind, salt = provider
            if kind == PASSPHRASE and salt:
                found.salts.add(salt)
            elif kind != PASSPHRASE:
                found.other_providers.add(kind)
        for item in value.values():
            _walk(item, found)
    elif isinstance(value, list):
        for item in value:
            _walk(item, found)


def _provider(value: dict) -> tuple[str, str | None] | None:
    """(type, salt) of a checkpoint's `secrets_providers` block, else None."""
    providers = value.get("secrets_providers")
    if not isinstance(providers, dict) or not isinstance(providers.get("type"), str):
        return None
    state = providers.get("state") if isinstance(providers.get("state"), dict) else {}
    salt = state.get("salt")
    return providers["type"], salt if isinstance(salt, str) else None


def collect(values: Iterator[Any], found: Found | None = None) -> Found:
    """Every ciphertext and salt in ``values`` (parsed objects and config files)."""
    found = found or Found()
    for value in values:
        _walk(value, found)
    return found


def rewrite(value: Any, new: Mapping[str, str], salt: str) -> Any:
    """``value`` with each ciphertext replaced by ``new[ciphertext]`` and each passphrase salt by ``salt``."""
    if isinstance(value, dict):
        out = {k: rewrite(v, new, salt) for k, v in value.items()}
        if value.get(SECRET_SIG) == SECRET_SIG_VALUE and isinstance(value.get("ciphertext"), str):
            out["ciphertext"] = new[value["ciphertext"]]
        if isinstance(value.get("secure"), str) and len(value) == 1:
            out["secure"] = new[value["secure"]]
        provider = _provider(value)
        if provider is not None and provider[0] == PASSPHRASE:
            out["secrets_providers"] = {**value["secrets_providers"], "state": {"salt": salt}}
        return out
    if isinstance(value, list):
        return [rewrite(item, new, salt) for item in value]
    return value


def config_file_values(text: str, shown: str) -> dict[str, Any]:
    """A stack config file's YAML (``shown`` names it in errors)."""
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        raise SecretsError(f"{shown}: not YAML: {error}") from None
    if not isinstance(data, dict):
        raise SecretsError(f"{shown}: expected a mapping")
    return data


def rewrite_config_file(text: str, new: Mapping[str, str], salt: str) -> str:
    """The config file's text with its salt and every `secure:` value replaced, layout kept.

    Ciphertexts are random base64, each occurring only as itself, so a textual replacement
    is exact; the result is parsed again and checked by the caller."""
    data = config_file_values(text, "the stack config file")
    old_salt = data.get("encryptionsalt")
    if isinstance(old_salt, str):
        text = text.replace(old_salt, salt)
    for old in sorted(new, key=len, reverse=True):
        text = text.replace(old, new[old])
    return text


Runner = Callable[[list[str], Mapping[str, str], str | None], subprocess.CompletedProcess[str]]


def run_pulumi(args: list[str], env: Mapping[str, str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, env=dict(env), input=stdin, capture_output=True, text=True, timeout=600)


class EngineCrypter:
    """Decrypts and encrypts through the engine, in a scratch project with its own file backend."""

    def __init__(self, tool_env: Mapping[str, str], runner: Runner = run_pulumi) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="smartnation-state-move-")
        self.root = Path(self._tmp.name)
        (self.root / "state").mkdir()
        (self.root / "Pulumi.yaml").write_text(f"name: {_SCRATCH_NAMESPACE}\nruntime: python\n", encoding="utf-8")
        env = {k: v for k, v in tool_env.items() if not k.startswith("PULUMI_CONFIG_PASSPHRASE")}
        self.env = {**env, "PULUMI_BACKEND_URL": f"file://{self.root / 'state'}", "PULUMI_SKIP_UPDATE_CHECK": "true"}
        self.runner = runner
        self._stacks = 0

    def close(self) -> None:
        self._tmp.cleanup()

    def __enter__(self) -> EngineCrypter:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _pulumi(self, passphrase: str, *args: str, what: str) -> str:
        env = {**self.env, "PULUMI_CONFIG_PASSPHRASE": passphrase}
        proc = self.runner(["pulumi", *args, "--non-interactive", "--cwd", str(self.root)], env, None)
        if proc.returncode != 0:
            detail = (proc.stderr or proc.stdout).strip().splitlines()
            reason = detail[-1] if detail else f"exit {proc.returncode}"
            if "incorrect passphrase" in reason:
                reason = "incorrect passphrase"
            raise SecretsError(f"{what}: {reason}")
        return proc.stdout

    def _new_stack(self, passphrase: str, salt: str | None, config: Mapping[str, Any], what: str) -> str:
        self._stacks += 1
        name = f"s{self._stacks}"
        if salt is not None:
            # An existing salt: `stack init` checks the passphrase against it and keeps it.
            document = {"encryptionsalt": salt, "config": dict(config)}
            (self.root / f"Pulumi.{name}.yaml").write_text(yaml.safe_dump(document), encoding="utf-8")
        self._pulumi(passphrase, "stack", "init", name, "--secrets-provider", PASSPHRASE, what=what)
        return name

    def decrypt(self, salt: str, ciphertexts: list[str], passphrase: str, what: str) -> dict[str, str]:
        """ciphertext -> plaintext, all under ``salt``; SecretsError if the passphrase does not open it."""
        keys = {f"{_SCRATCH_NAMESPACE}:v{i}": ct for i, ct in enumerate(ciphertexts)}
        config = {key: {"secure": ct} for key, ct in keys.items()}
        name = self._new_stack(passphrase, salt, config, what)
        shown = json.loads(self._pulumi(passphrase, "config", "--show-secrets", "--json", "--stack", name, what=what))
        return {ct: shown[key]["value"] for key, ct in keys.items()}

    def encrypt(self, plaintexts: list[str], passphrase: str, what: str) -> tuple[str, dict[str, str]]:
        """(the new salt, plaintext -> ciphertext), under a fresh salt for ``passphrase``."""
        name = self._new_stack(passphrase, None, {}, what)
        keys = {f"{_SCRATCH_NAMESPACE}:v{i}": text for i, text in enumerate(plaintexts)}
        batch: list[str] = []
        size = 0
        for key, text in keys.items():
            batch += ["--secret", f"{key}={text}"]
            size += len(key) + len(text)
            if size > _ARGV_BATCH:
                self._pulumi(passphrase, "config", "set-all", "--stack", name, *batch, what=what)
                batch, size = [], 0
        if batch:
            self._pulumi(passphrase, "config", "set-all", "--stack", name, *batch, what=what)
        written = config_file_values(
            (self.root / f"Pulumi.{name}.yaml").read_text(encoding="utf-8"), "the scratch stack file"
        )
        salt = written["encryptionsalt"]
        config = written.get("config") or {}
        return salt, {text: config[key]["secure"] for key, text in keys.items()}


def reencrypt(
    crypter: EngineCrypter, found: Found, old_passphrase: str, new_passphrase: str
) -> tuple[str, dict[str, str]]:
    """(new salt, old ciphertext -> new ciphertext) for every ciphertext ``found``."""
    if found.other_providers:
        raise SecretsError(
            f"the stack's secrets provider is {sorted(found.other_providers)}, not passphrase: "
            "only passphrase-encrypted stacks can be moved"
        )
    if len(found.salts) != 1:
        raise SecretsError(
            f"the stack's secrets are under {len(found.salts)} salts ({sorted(found.salts) or 'none'}): "
            "expected one (a stack whose secrets provider was changed before cannot be moved by this step)"
        )
    (salt,) = found.salts
    plain = crypter.decrypt(salt, sorted(found.ciphertexts), old_passphrase, "decrypting with the source passphrase")
    distinct = sorted(set(plain.values()))
    new_salt, encrypted = crypter.encrypt(distinct, new_passphrase, "encrypting with the target passphrase")
    return new_salt, {old: encrypted[text] for old, text in plain.items()}
