"""One module per image: what goes into its root filesystem, who runs it, how it starts.

`all_recipes(pins)` lists them in build order.
"""

from __future__ import annotations

from smartnation.tooling.images.builder import Recipe
from smartnation.tooling.images.oci import iso
from smartnation.tooling.images.pins import ImagePin, Pins

DEBIAN_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def labels(pin: ImagePin, pins: Pins, title: str, source: str, licenses: str) -> dict[str, str]:
    """The OCI annotations every image carries (org.opencontainers.image.*)."""
    return {
        "org.opencontainers.image.title": title,
        "org.opencontainers.image.version": pin.version,
        "org.opencontainers.image.created": iso(pins.source_date_epoch),
        "org.opencontainers.image.source": source,
        "org.opencontainers.image.licenses": licenses,
        "org.opencontainers.image.vendor": "smartnation (built by infra/smartnation/tooling/images)",
    }


def all_recipes(pins: Pins) -> list[Recipe]:
    from smartnation.tooling.images.pins import API_NAMES
    from smartnation.tooling.images.recipes import broker, city_apis, database, object_storage

    return [
        broker.recipe(pins),
        database.recipe(pins),
        object_storage.client_recipe(pins),
        object_storage.server_recipe(pins),
        *(city_apis.recipe(pins, api) for api in API_NAMES),
    ]
