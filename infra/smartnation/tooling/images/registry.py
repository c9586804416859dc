"""Placeholder replaced below."""
from __future__ import annotations


class RegistryError(RuntimeError):
    pass


def site_registries(pins, cache):
    return []
