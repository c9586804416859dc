"""The one path releases travel (environments/promotion.yaml) and whether a promotion follows it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from smartnation.settings import SettingsError
from smartnation.settings.yaml_files import read_yaml

PROMOTION_FILE = "promotion.yaml"


def load_order(environments: Path) -> tuple[str, ...]:
    """`order:` of environments/promotion.yaml: the one path releases travel, first to last."""
    shown = f"{environments.name}/{PROMOTION_FILE}"
    data = read_yaml(environments / PROMOTION_FILE, shown)  # strict: a repeated key is an error
    if not isinstance(data, Mapping) or set(data) != {"order"}:
        raise SettingsError(shown, "<top level>", "expected a mapping with the one key `order`")
    order = data["order"]
    if (
        not isinstance(order, list)
        or len(order) < 2
        or not all(isinstance(name, str) and name for name in order)
        or len(set(order)) != len(order)
    ):
        raise SettingsError(shown, "order", f"expected a list of two or more distinct environment names, got {order!r}")
    for name in order:
        if not (environments / f"{name}.yaml").is_file():
            raise SettingsError(shown, "order", f"{name!r} has no environment file {name}.yaml")
    return tuple(order)


def check_promotion(source: str, target: str, order: Sequence[str], shown: str = "environments/promotion.yaml") -> None:
    """Raise SettingsError (-> BAD_INPUT) unless TARGET is the environment right after SOURCE."""
    chain = " -> ".join(order)
    for role, name in (("SOURCE", source), ("TARGET", target)):
        if name not in order:
            raise SettingsError(
                shown, "order", f"{role} {name!r} is not an environment of the promotion order ({chain})"
            )
    if source == target:
        raise SettingsError(
            shown, "order", f"cannot promote {source!r} to itself: promote to the next environment ({chain})"
        )
    step = order.index(target) - order.index(source)
    if step < 0:
        raise SettingsError(
            shown, "order", f"{source} -> {target} goes backwards: releases only move forward ({chain})"
        )
    if step > 1:
        skipped = ", ".join(order[order.index(source) + 1 : order.index(target)])
        raise SettingsError(
            shown, "order", f"{source} -> {target} skips {skipped}: promote one step at a time ({chain})"
        )
