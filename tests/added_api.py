"""A fourth city API, added the way an operator adds one: as data only.

``add_api(environments, environment)`` writes one entry under ``city_apis`` and its release under
``releases.components`` into ``<environment>.yaml`` of a scratch copy of environments/, and touches
nothing else: no program code, no chart, no image build. The unit tests (tests/unit/test_fourth_api.py)
build the program with it under mocks; the integration test (tests/integration/test_fourth_api.py)
deploys it on a real node.

The API runs an image the platform already builds: the open-data API's (repository open-data-api at
the tag the environment releases, so the images lock lists it), wired the way that image needs to
become ready (the telemetry database as a read-only role, the open-data storage user). A city
service with its own image adds its image to images.yaml; what the program does is the same.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

NAME = "street_lighting"
"""The added API's key in ``city_apis`` and ``releases.components``."""
APP = "street-lighting"
"""Its Kubernetes name (Helm release ``<env>-street-lighting``)."""
IMAGE_OF = "open_data_api"
"""The API whose release (repository and tag) the added one runs."""

SETTINGS: dict[str, Any] = {
    "replicas": 1,
    # Above replicas, so the quota accounting is seen to count the HPA ceiling.
    "max_replicas": 3,
    "resources": {"requests": {"cpu": "20m", "memory": "48Mi"}, "limits": {"cpu": "300m", "memory": "160Mi"}},
    "database": {"name": "telemetry", "role": "open_data"},
    "storage_user": "open-data-api",
    "extra_env": {"OPEN_DATA_MAX_POINTS": "500"},
}
"""The added API's entry under ``city_apis``."""


def release_of(environments: Path, environment: str, name: str = IMAGE_OF) -> dict[str, Any]:
    """The release ``<environment>.yaml`` states for the component ``name`` (a copy)."""
    data = yaml.safe_load((environments / f"{environment}.yaml").read_text(encoding="utf-8"))
    return dict(data["releases"]["components"][name])


def add_api(
    environments: Path,
    environment: str,
    *,
    name: str = NAME,
    settings: dict[str, Any] | None = None,
    release: bool = True,
) -> None:
    """Add the API ``name`` to ``<environment>.yaml`` in ``environments``: its settings under
    ``city_apis`` and (unless ``release`` is false) its release, the one ``IMAGE_OF`` runs."""
    path = environments / f"{environment}.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data.setdefault("city_apis", {})[name] = dict(settings if settings is not None else SETTINGS)
    if release:
        data["releases"]["components"][name] = release_of(environments, environment)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
