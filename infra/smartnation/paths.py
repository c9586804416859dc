"""Where things are: the one place that knows the repository layout and its overrides.

- the code (``infra/``, ``policy/``, ``charts/``) is always this checkout (``REPO``);
- the *project* (Pulumi.yaml, the stack files under environments/stacks, the git history that
  ``preview`` diffs) is ``$SMARTNATION_PROJECT_DIR``, by default this checkout;
- the environment files are ``$SMARTNATION_ENVIRONMENTS_DIR``, by default
  ``<project>/environments`` (promote previews a target with a temporary copy);
- the toolchain, the local clusters and the local state backend live in the cache,
  ``$SMARTNATION_CACHE``, by default ``~/.cache/smartnation``, outside any checkout.

Every function reads the process environment when it is called and never changes it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

# infra/smartnation/paths.py -> the repository is two levels above the package.
REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "city-api"
"""Our Helm chart for the city APIs."""
POLICY_PACK = REPO / "policy"
"""The policy pack's directory (the engine loads it from there)."""

PROJECT_DIR_VARIABLE = "SMARTNATION_PROJECT_DIR"
ENVIRONMENTS_DIR_VARIABLE = "SMARTNATION_ENVIRONMENTS_DIR"
CACHE_VARIABLE = "SMARTNATION_CACHE"

CLUSTERS_DIR = "clusters"
"""Cluster profiles, inside the environments directory."""
STACKS_DIR = "stacks"
"""Encrypted stack files (secrets), inside the environments directory; never committed."""
IMAGES_LOCK = "images.lock.yaml"
"""Image repository:tag -> manifest digest of what `make images` built, inside the environments
directory (beside the releases it resolves); written by the build, committed, never typed by hand."""


def project_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """The Pulumi project directory: $SMARTNATION_PROJECT_DIR, else this checkout."""
    configured = environ.get(PROJECT_DIR_VARIABLE)
    return Path(configured).resolve() if configured else REPO


def environments_dir(root: Path | None = None, environ: Mapping[str, str] = os.environ) -> Path:
    """The environment files: ``root``, else $SMARTNATION_ENVIRONMENTS_DIR, else <project>/environments."""
    if root is not None:
        return Path(root)
    configured = environ.get(ENVIRONMENTS_DIR_VARIABLE)
    return Path(configured).resolve() if configured else project_dir(environ) / "environments"


def cluster_profiles_dir(root: Path | None = None) -> Path:
    """environments/clusters/: one profile per cluster."""
    return environments_dir(root) / CLUSTERS_DIR


def images_lock_file(root: Path | None = None) -> Path:
    """environments/images.lock.yaml: the digests the environments' releases deploy."""
    return environments_dir(root) / IMAGES_LOCK


def cache_root(environ: Mapping[str, str] = os.environ) -> Path:
    """The cache outside the repository: $SMARTNATION_CACHE, else $XDG_CACHE_HOME/smartnation."""
    explicit = environ.get(CACHE_VARIABLE)
    if explicit:
        return Path(explicit).expanduser().resolve()
    xdg = environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser().resolve() / "smartnation"
