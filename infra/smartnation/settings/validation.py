"""Turn parsed YAML into frozen dataclasses, strictly.

One generic converter walks the dataclass type hints, so adding a setting means adding one
annotated field with a docstring: unknown keys, wrong types, bad enums and ranges are then
rejected with the file and the key path without writing any validation code by hand.

Field metadata understood by the converter (see ``setting``):
``range=(lo, hi)`` for ints (and for the prefix length of an ``IPv4Network``), ``pattern=``
(regex) for strings, ``quantity="cpu"|"memory"`` with optional ``quantity_range=(lo, hi)`` for
Kubernetes quantities, ``key=`` for a YAML key that is not a Python name, and ``from_key=True``
for a field filled with the key its mapping sits under rather than read from the file.
"""

from __future__ import annotations

import dataclasses
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
    key: str | None = None,
    from_key: bool = False,
) -> Any:
    """A dataclass field carrying the validation rules the converter applies."""
    metadata = {
        "range": range,
        "pattern": re.compile(pattern) if pattern else None,
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

    def __init__(self, default_file: str) -> None:
        self.default_file = default_file
        self._by_path: dict[tuple[str, ...], str] = {}

    def record(self, path: tuple[str, ...], file: str) -> None:
        self._by_path[path] = file

    def file_for(self, path: tuple[str, ...]) -> str:
        for end in range(len(path), 0, -1):
            found = self._by_path.get(path[:end])
            if found:
                return found
        return self.default_file


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
    hints = typing.get_type_hints(cls)
    fields = {_yaml_key(f): f for f in _read_fields(cls)}
    unknown = sorted(str(k) for k in data if k not in fields)
    if unknown:
        _fail(
            origins,
            (*path, unknown[0]),
            f"unknown key; expected one of {_field_names(cls)}",
        )
    kwargs: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        if field.metadata.get("from_key"):
            if not path:
                raise TypeError(f"{cls.__name__}.{field.name}: from_key needs the dataclass to sit under a key")
            kwargs[field.name] = path[-1]
    for name, field in fields.items():
        sub = (*path, name)
        if name in data:
            kwargs[field.name] = _value(hints[field.name], data[name], sub, origins, field.metadata)
        elif field.default is MISSING and field.default_factory is MISSING:
            _fail(origins, sub, "required key is missing")
    try:
        return cls(**kwargs)
    except ValueError as error:  # cross-field checks in __post_init__
        _fail(origins, path, str(error))


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
        return tuple(_value(args[0], item, (*path, str(i)), origins, meta) for i, item in enumerate(value))

    if origin in (dict, Mapping) or tp is dict:
        if not isinstance(value, Mapping):
            _fail(origins, path, f"expected a mapping, got {_describe(value)}")
        key_type, value_type = args
        result = {}
        for key, item in value.items():
            if not isinstance(key, str):
                _fail(origins, (*path, str(key)), f"expected a string key, got {_describe(key)}")
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


def display_path(file: Path, root: Path) -> str:
    """``environments/staging.yaml`` style path for messages: relative to the parent of root."""
    try:
        return file.resolve().relative_to(root.resolve().parent).as_posix()
    except ValueError:
        return str(file)
