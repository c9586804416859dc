"""Turn parsed YAML into frozen dataclasses, strictly.

One generic converter walks the dataclass type hints, so adding a setting means adding one
annotated field with a docstring: unknown keys, wrong types, bad enums and ranges are then
rejected with the file and the key path without writing any validation code by hand.

Field metadata understood by the converter (see ``setting``):
``range=(lo, hi)`` for ints (and for the prefix length of an ``IPv4Network``), ``pattern=``
(regex) for strings, ``kind=`` for strings that end up somewhere with rules of their own (a
CIDR, a cron schedule, a Kubernetes name or label, an environment variable name, a SQL
identifier, an MQTT topic filter: see ``KINDS``), ``quantity="cpu"|"memory"`` with optional
``quantity_range=(lo, hi)`` for Kubernetes quantities, ``items=(lo, hi)`` and ``unique=True``
for lists (and the size of mappings), ``key_kind=`` for the keys of a mapping, ``key=`` for a
YAML key that is not a Python name, and ``from_key=True`` for a field filled with the key its
mapping sits under rather than read from the file.

Cross-field checks live in the dataclasses' ``__post_init__``: a ``ValueError`` there is
reported at the dataclass's key path, a ``FieldProblem`` at the key path it names below it.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import re
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from smartnation.settings.errors import SettingsError

MISSING = dataclasses.MISSING


def setting(
    *,
    default: Any = MISSING,
    default_factory: Callable[[], Any] | Any = MISSING,
    range: tuple[int, int] | None = None,  # noqa: A002 - reads naturally at the call site
    pattern: str | None = None,
    quantity: Literal["cpu", "memory"] | None = None,
    quantity_range: tuple[str, str] | None = None,
    describe: str | None = None,
    kind: str | None = None,
    key_kind: str | None = None,
    items: tuple[int, int] | None = None,
    unique: bool = False,
    max_length: int = 253,
    key: str | None = None,
    from_key: bool = False,
) -> Any:  # pragma: no mutate block
    """A dataclass field carrying the validation rules the converter applies.

    (No mutation testing here: it runs when the models are imported, before mutmut switches a
    mutant on, so no test could tell a mutant from the original; the converter's tests cover
    what the metadata does.)"""
    for named in (kind, key_kind):
        if named is not None and named not in KINDS:
            raise TypeError(f"unknown setting kind {named!r}; known: {', '.join(sorted(KINDS))}")
    metadata = {
        "range": range,
        "pattern": re.compile(pattern) if pattern else None,
        # What the string ends up as (KINDS): checked to the rules of that destination.
        "kind": kind,
        # The same for the keys of a mapping (environment variable names, label keys).
        "key_kind": key_kind,
        # Number of items of a list or entries of a mapping, and whether list items must differ.
        "items": items,
        "unique": unique,
        # Plain strings end up in object fields, labels or annotations: none wants a novel.
        "max_length": max_length,
        "quantity": quantity,
        "quantity_range": quantity_range,
        "describe": describe,
        # YAML key when it cannot be a Python name (``class`` in the ingress profile).
        "key": key,
        # The mapping's own key, e.g. the tool name a pin in versions.yaml is listed under.
        "from_key": from_key,
    }
    if default_factory is not MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


class FieldProblem(ValueError):
    """A cross-field problem found in ``__post_init__`` that belongs to one key below the
    dataclass (``FieldProblem(("roles", "0", "name"), "...")``), so the message names it."""

    def __init__(self, key: str | tuple[str, ...], message: str) -> None:
        self.key = (key,) if isinstance(key, str) else tuple(key)
        super().__init__(message)


# --- Kinds: the rules of where a string ends up ------------------------------------------------

_DNS_LABEL_RE = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_DNS_SUBDOMAIN_RE = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*")
_LABEL_NAME_RE = re.compile(r"([A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?)?")
_ENV_VAR_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SQL_IDENTIFIER_RE = re.compile(r"[a-z_][a-z0-9_]*")
# A settings key that names a component: a Python-style identifier whose `-` form (`_` -> `-`) is
# a DNS label, so that the API `street_lighting` is `street-lighting` in Kubernetes and DNS.
_COMPONENT_NAME_RE = re.compile(r"[a-z]([a-z0-9_]{0,61}[a-z0-9])?")


def _words(text: str) -> tuple[str, ...]:  # pragma: no mutate block (runs at import, as setting())
    return tuple(text.split())


# NAMEDATALEN - 1: PostgreSQL silently truncates longer identifiers.
SQL_IDENTIFIER_MAX = 63
# PostgreSQL's reserved key words (SQL Key Words appendix, "reserved" and "reserved (can be
# function or type)"): the init script writes identifiers unquoted (`ALTER ROLE user ...`), where
# one of these is a syntax error at the next pod start rather than a name.
SQL_RESERVED_WORDS = frozenset(
    _words(
        """all analyse analyze and any array as asc asymmetric authorization binary both case cast check
    collate collation column concurrently constraint create cross current_catalog current_date
    current_role current_schema current_time current_timestamp current_user default deferrable desc
    distinct do else end except false fetch for foreign freeze from full grant group having ilike in
    initially inner intersect into is isnull join lateral leading left like limit localtime
    localtimestamp natural not notnull null offset on only or order outer overlaps placing primary
    references returning right select session_user similar some symmetric system_user table
    tablesample then to trailing true union unique user using variadic verbose when where window
    with"""
    )
)
_CRON_FIELDS = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, {m: i for i, m in enumerate(_words("jan feb mar apr may jun jul aug sep oct nov dec"), 1)}),
    ("day of week", 0, 7, {d: i for i, d in enumerate(_words("sun mon tue wed thu fri sat"))}),
)


def _dns_label(value: str) -> str | None:
    return None if _DNS_LABEL_RE.fullmatch(value) else "lowercase letters, digits and '-', at most 63 characters"


def _dns_subdomain(value: str) -> str | None:
    """A Kubernetes object name (IsDNS1123Subdomain: no limit per label)."""
    if len(value) > 253 or not _DNS_SUBDOMAIN_RE.fullmatch(value):
        return "lowercase DNS labels separated by '.', at most 253 characters"
    return None


def _hostname(value: str) -> str | None:
    """A name DNS resolves: a subdomain whose every label has at most 63 characters."""
    problem = _dns_subdomain(value)
    if problem is None and any(len(label) > 63 for label in value.split(".")):
        return "each label at most 63 characters"
    return problem


def _label_key(value: str) -> str | None:
    """A qualified name: ``[prefix/]name`` (label, annotation and node-selector keys)."""
    prefix, _, name = value.rpartition("/")
    if "/" in value and (not prefix or _dns_subdomain(prefix)):
        return "its prefix before '/' must be a DNS subdomain"
    if not name or not _LABEL_NAME_RE.fullmatch(name):
        return "a name of letters, digits, '-', '_' and '.', starting and ending alphanumeric, at most 63"
    return None


def _label_value(value: str) -> str | None:
    return None if _LABEL_NAME_RE.fullmatch(value) else "at most 63 letters, digits, '-', '_', '.', alphanumeric ends"


def _cidr(value: str) -> str | None:
    try:
        ipaddress.ip_network(value, strict=True)
    except ValueError as error:
        return str(error)
    return None if "/" in value else "the prefix length (/NN) must be written"


def _cron(value: str) -> str | None:
    fields = value.split()
    if len(fields) != 5:
        return f"five fields (minute hour day-of-month month day-of-week), got {len(fields)}"
    for text, (what, low, high, names) in zip(fields, _CRON_FIELDS, strict=True):
        for part in text.split(","):
            problem = _cron_part(part.lower(), low, high, names)
            if problem:
                return f"{what} field {text!r}: {problem}"
    return None


def _cron_part(part: str, low: int, high: int, names: Mapping[str, int]) -> str | None:
    spec, slash, step = part.partition("/")
    if slash and not (step.isdigit() and 0 < int(step) <= high):
        return f"step {step!r} must be a number from 1 to {high}"

    def number(text: str) -> int | None:
        value = names.get(text, int(text) if text.isdigit() else None)
        return value if value is not None and low <= value <= high else None

    if spec == "*":
        return None
    first, dash, last = spec.partition("-")
    start, end = number(first), number(last) if dash else None
    if start is None or (dash and end is None):
        return f"{spec!r} is not a value from {low} to {high}"
    if dash and end < start:
        return f"range {spec!r} runs backwards"
    return None


def _env_var(value: str) -> str | None:
    return None if _ENV_VAR_RE.fullmatch(value) else "letters, digits and '_', not starting with a digit"


def _component_name(value: str) -> str | None:
    if not _COMPONENT_NAME_RE.fullmatch(value):
        return "lowercase letters, digits and '_', starting with a letter, ending alphanumeric, at most 63 characters"
    return None


def _sql_identifier(value: str) -> str | None:
    if not _SQL_IDENTIFIER_RE.fullmatch(value) or len(value) > SQL_IDENTIFIER_MAX:
        return f"a lowercase SQL identifier [a-z_][a-z0-9_]* of at most {SQL_IDENTIFIER_MAX} characters"
    if value in SQL_RESERVED_WORDS:
        return "a name that is not a reserved SQL key word"
    return None


def _topic_filter(value: str) -> str | None:
    # The broker's own rules (the ACL renderer refuses the same), then ours: a filter made only
    # of wildcards (`#`, `+/#`) reaches every topic, so no class may hold one.
    from smartnation.program.daemon_config.mosquitto import validate_topic_filter

    try:
        validate_topic_filter(value, where="topic filter")
    except ValueError as error:
        return str(error).removeprefix("topic filter: ")
    if all(level in ("+", "#") for level in value.split("/")):
        return "a filter with at least one literal level (wildcards alone reach every topic)"
    return None


def _bucket(value: str) -> str | None:
    if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", value) or ".." in value or ".-" in value or "-." in value:
        return "3 to 63 lowercase letters, digits, '.' and '-', alphanumeric ends, no '..'"
    if re.fullmatch(r"\d+\.\d+\.\d+\.\d+", value) or value.startswith("xn--") or value.endswith("-s3alias"):
        return "not an IP address, no 'xn--' prefix, no '-s3alias' suffix"
    return None


KINDS: dict[str, tuple[str, Callable[[str], str | None]]] = {
    # kind: (what the message says is expected, checker returning the problem or None)
    "cidr": ("an IP network in CIDR notation such as 198.51.100.0/24", _cidr),
    "cron": ("a five-field cron schedule such as '15 2 * * *'", _cron),
    "dns_label": ("a DNS label (Kubernetes name)", _dns_label),
    "component_name": ("a component name such as street_lighting (with '-' for '_', a DNS label)", _component_name),
    "dns_subdomain": ("a DNS subdomain (Kubernetes object name)", _dns_subdomain),
    "hostname": ("a DNS host name", _hostname),
    "label_key": ("a Kubernetes label or annotation key", _label_key),
    "label_value": ("a Kubernetes label value", _label_value),
    "env_var": ("an environment variable name", _env_var),
    "sql_identifier": ("a lowercase SQL identifier", _sql_identifier),
    "topic_filter": ("an MQTT topic filter", _topic_filter),
    "bucket": ("an S3 bucket name", _bucket),
}
"""Kinds a string setting can be declared as (``setting(kind=...)``)."""


def check_kind(kind: str, value: str) -> str | None:
    """The problem with ``value`` as a ``kind``, or None: for checks outside the converter."""
    expected, checker = KINDS[kind]
    problem = checker(value)
    return f"expected {expected} ({problem}), got {value!r}" if problem else None


# --- Kubernetes quantities ------------------------------------------------------------------

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50}
_DECIMAL = {"k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "m": 10**-3, "": 1}
_QUANTITY_RE = re.compile(r"^(?P<num>[0-9]+(\.[0-9]+)?)(?P<suffix>Ki|Mi|Gi|Ti|Pi|k|M|G|T|P|m)?$")


def parse_quantity(text: str) -> float:
    """Value of a Kubernetes quantity (``500m`` -> 0.5, ``1Gi`` -> 1073741824); ValueError if malformed."""
    match = _QUANTITY_RE.fullmatch(text)
    if not match:
        raise ValueError(text)
    suffix = match["suffix"] or ""
    factor = _BINARY.get(suffix) or _DECIMAL[suffix]
    return float(match["num"]) * factor


# --- Conversion -----------------------------------------------------------------------------


class Origins:
    """Which file each key path came from, so an error after merging names the right file."""

    def __init__(self, default_file: str, missing_file: Callable[[tuple[str, ...]], str] | None = None) -> None:
        self.default_file = default_file
        self._by_path: dict[tuple[str, ...], str] = {}
        # Where a key that is in no file should have been: the loader says the shared defaults
        # (which hold every key) rather than the environment file that merely overrides the block.
        self._missing_file = missing_file

    def record(self, path: tuple[str, ...], file: str) -> None:
        self._by_path[path] = file

    def file_for(self, path: tuple[str, ...]) -> str:
        for end in range(len(path), 0, -1):
            found = self._by_path.get(path[:end])
            if found:
                return found
        return self.default_file

    def missing_file_for(self, path: tuple[str, ...]) -> str:
        """The file a required key missing at ``path`` should be in (``missing_file`` decides,
        else the file its mapping came from)."""
        return self._missing_file(path) if self._missing_file else self.file_for(path)


def _fail(origins: Origins, path: tuple[str, ...], message: str) -> typing.NoReturn:
    raise SettingsError(origins.file_for(path), ".".join(path) or "<top level>", message)


def _describe(value: Any) -> str:
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing (null)"
    return repr(value)


def convert(cls: type, data: Any, path: tuple[str, ...], origins: Origins) -> Any:
    """Build dataclass ``cls`` from ``data`` (a mapping), recursively and strictly."""
    if not isinstance(data, Mapping):
        _fail(origins, path, f"expected a mapping with keys {_field_names(cls)}, got {_describe(data)}")
    hints, fields, from_key = _schema(cls)
    unknown = sorted(str(k) for k in data if k not in fields)
    if unknown:
        _fail(
            origins,
            (*path, unknown[0]),
            f"unknown key; expected one of {_field_names(cls)}",
        )
    kwargs: dict[str, Any] = {}
    for field in from_key:
        if not path:
            raise TypeError(f"{cls.__name__}.{field.name}: from_key needs the dataclass to sit under a key")
        kwargs[field.name] = path[-1]
    for name, field in fields.items():
        sub = (*path, name)
        if name in data:
            kwargs[field.name] = _value(hints[field.name], data[name], sub, origins, field.metadata)
        elif field.default is MISSING and field.default_factory is MISSING:
            raise SettingsError(origins.missing_file_for(sub), ".".join(sub), "required key is missing")
    try:
        return cls(**kwargs)
    except FieldProblem as problem:  # a cross-field check that names its key
        _fail(origins, (*path, *problem.key), str(problem))
    except ValueError as error:  # cross-field checks in __post_init__
        _fail(origins, path, str(error))


@functools.cache
def _schema(
    cls: type,
) -> tuple[dict[str, Any], dict[str, dataclasses.Field], tuple[dataclasses.Field, ...]]:
    """Type hints, fields by YAML key, and fields filled from the mapping's key, of ``cls``.

    Resolving annotations and listing fields was most of a conversion's time; a class's schema
    never changes, so it is worked out once."""
    fields = {_yaml_key(f): f for f in _read_fields(cls)}
    from_key = tuple(f for f in dataclasses.fields(cls) if f.metadata.get("from_key"))
    return typing.get_type_hints(cls), fields, from_key


def _read_fields(cls: type) -> list[dataclasses.Field]:
    """The fields a file states (not those filled from the mapping's key)."""
    return [f for f in dataclasses.fields(cls) if f.init and not f.metadata.get("from_key")]


def _yaml_key(field: dataclasses.Field) -> str:
    return field.metadata.get("key") or field.name


def _field_names(cls: type) -> str:
    return ", ".join(_yaml_key(f) for f in _read_fields(cls))


def _value(tp: Any, value: Any, path: tuple[str, ...], origins: Origins, meta: Mapping[str, Any]) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)

    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _value(inner, value, path, origins, meta)

    if origin is Literal:
        if value not in args:
            choices = ", ".join(repr(a) for a in args)
            _fail(origins, path, f"expected one of {choices}, got {_describe(value)}")
        return value

    if dataclasses.is_dataclass(tp):
        return convert(tp, value, path, origins)

    if origin is tuple:
        if not isinstance(value, list):
            _fail(origins, path, f"expected a list, got {_describe(value)}")
        _count(value, "items", path, origins, meta)
        items = tuple(_value(args[0], item, (*path, str(i)), origins, meta) for i, item in enumerate(value))
        if meta.get("unique"):
            for i, item in enumerate(items):
                if item in items[:i]:
                    _fail(origins, (*path, str(i)), f"{_describe(item)} is already listed")
        return items

    if origin in (dict, Mapping) or tp is dict:
        if not isinstance(value, Mapping):
            _fail(origins, path, f"expected a mapping, got {_describe(value)}")
        _count(value, "entries", path, origins, meta)
        key_type, value_type = args
        key_kind = meta.get("key_kind")
        result = {}
        for key, item in value.items():
            if not isinstance(key, str):
                _fail(origins, (*path, str(key)), f"expected a string key, got {_describe(key)}")
            if key_kind:
                problem = check_kind(key_kind, key)
                if problem:
                    _fail(origins, (*path, key), f"key: {problem}")
            result[key] = _value(value_type, item, (*path, key), origins, meta)
        return types.MappingProxyType(result)

    if tp is bool:
        if not isinstance(value, bool):
            _fail(origins, path, f"expected true or false, got {_describe(value)}")
        return value

    if tp is int:
        bounds = meta.get("range")
        expected = f"an integer from {bounds[0]} to {bounds[1]}" if bounds else "an integer"
        if isinstance(value, bool) or not isinstance(value, int):
            _fail(origins, path, f"expected {expected}, got {_describe(value)}")
        if bounds and not bounds[0] <= value <= bounds[1]:
            _fail(origins, path, f"expected {expected}, got {value!r}")
        return value

    if tp is str:
        return _string(value, path, origins, meta)

    if tp is ipaddress.IPv4Network:
        return _network(value, path, origins, meta)

    if tp is ipaddress.IPv4Address:
        expected = "an IPv4 address such as 198.51.100.250"
        if not isinstance(value, str):
            _fail(origins, path, f"expected {expected}, got {_describe(value)}")
        try:
            return ipaddress.IPv4Address(value)
        except ValueError:
            _fail(origins, path, f"expected {expected}, got {value!r}")

    if tp is Any:
        return value

    raise TypeError(f"settings schema uses an unsupported type {tp!r} at {'.'.join(path)}")


def _count(value: Any, what: str, path: tuple[str, ...], origins: Origins, meta: Mapping[str, Any]) -> None:
    bounds = meta.get("items")
    if bounds and not bounds[0] <= len(value) <= bounds[1]:
        _fail(origins, path, f"expected from {bounds[0]} to {bounds[1]} {what}, got {len(value)}")


def _string(value: Any, path: tuple[str, ...], origins: Origins, meta: Mapping[str, Any]) -> str:
    kind = meta.get("quantity")
    if kind:
        # YAML reads `cpu: 2` as an int; a bare number is a valid CPU quantity, so accept it.
        if kind == "cpu" and isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        expected = "a CPU quantity such as 500m or 2" if kind == "cpu" else "a size such as 512Mi or 20Gi"
        bounds = meta.get("quantity_range")
        if bounds:
            expected += f", from {bounds[0]} to {bounds[1]}"
        if not isinstance(value, str):
            _fail(origins, path, f"expected {expected}, got {_describe(value)}")
        try:
            amount = parse_quantity(value)
        except ValueError:
            _fail(origins, path, f"expected {expected}, got {value!r}")
        if bounds and not parse_quantity(bounds[0]) <= amount <= parse_quantity(bounds[1]):
            _fail(origins, path, f"expected {expected}, got {value!r}")
        return value
    if not isinstance(value, str):
        _fail(origins, path, f"expected a string, got {_describe(value)}")
    pattern = meta.get("pattern")
    if pattern and not pattern.fullmatch(value):
        what = meta.get("describe") or f"a string matching {pattern.pattern}"
        _fail(origins, path, f"expected {what}, got {value!r}")
    kind = meta.get("kind")
    if kind:
        problem = check_kind(kind, value)
        if problem:
            _fail(origins, path, problem)
    elif not value:
        # An empty string is never a useful setting; a kind or a pattern says more than this.
        _fail(origins, path, "expected a non-empty string, got ''")
    longest = meta.get("max_length") or 253
    if len(value) > longest:
        _fail(origins, path, f"expected at most {longest} characters, got {len(value)}")
    return value


def _network(value: Any, path: tuple[str, ...], origins: Origins, meta: Mapping[str, Any]) -> ipaddress.IPv4Network:
    bounds = meta.get("range")
    if bounds and bounds[0] == bounds[1]:
        expected = f"a /{bounds[0]} IPv4 network such as 198.51.100.0/{bounds[0]}"
    elif bounds:
        expected = f"an IPv4 network from /{bounds[0]} to /{bounds[1]} such as 198.51.100.0/24"
    else:
        expected = "an IPv4 network such as 198.51.100.0/24"
    if not isinstance(value, str):
        _fail(origins, path, f"expected {expected}, got {_describe(value)}")
    try:
        network = ipaddress.IPv4Network(value)  # strict: host bits set is a mistake, not a shorthand
    except ValueError as error:
        _fail(origins, path, f"expected {expected}, got {value!r} ({error})")
    if bounds and not bounds[0] <= network.prefixlen <= bounds[1]:
        _fail(origins, path, f"expected {expected}, got {value!r}")
    return network


@functools.lru_cache(maxsize=256)
def display_path(file: Path, root: Path) -> str:
    """``environments/staging.yaml`` style path for messages: relative to the parent of root."""
    try:
        return file.resolve().relative_to(root.resolve().parent).as_posix()
    except ValueError:
        return str(file)
