"""The open-data API's settings: the connections the program wires, plus limits."""

from __future__ import annotations

from pydantic import Field

from service_common.settings import DatabaseSettings, ServiceSettings, StorageSettings

SERVICE = "open-data-api"


class OpenDataSettings(ServiceSettings, DatabaseSettings, StorageSettings):
    """Everything open-data-api reads from its environment, once, at start. It connects to
    PGHOST_READONLY (the replicas, or the primary where there are none)."""

    # Not wired by the program yet (services/README.md): the default is the bucket name in
    # environments/defaults.yaml.
    open_data_bucket: str = Field(default="open-data", validation_alias="OPEN_DATA_BUCKET")
    max_points: int = Field(default=10_000, ge=10, le=1_000_000, validation_alias="OPEN_DATA_MAX_POINTS")
    statement_timeout_ms: int = Field(default=10_000, ge=100, validation_alias="OPEN_DATA_STATEMENT_TIMEOUT_MS")
