"""Settings: environments/*.yaml and cluster profiles as validated, frozen dataclasses."""

from smartnation.settings.errors import SettingsError
from smartnation.settings.loader import (
    environments_dir,
    list_clusters,
    list_environments,
    load_cluster_profile,
    load_settings,
    read_cluster_profile,
)
from smartnation.settings.models import ClusterProfile, Settings

__all__ = [
    "ClusterProfile",
    "Settings",
    "SettingsError",
    "environments_dir",
    "list_clusters",
    "list_environments",
    "load_cluster_profile",
    "load_settings",
    "read_cluster_profile",
]
