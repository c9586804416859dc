"""The ingest's settings: the connections the program wires, plus tuning with safe defaults."""

from __future__ import annotations

from pydantic import Field

from service_common.settings import BrokerSettings, DatabaseSettings, ServiceSettings, StorageSettings

SERVICE = "telemetry-ingest"


class IngestSettings(ServiceSettings, BrokerSettings, DatabaseSettings, StorageSettings):
    """Everything telemetry-ingest reads from its environment, once, at start."""

    # Not wired by the program yet (services/README.md): the default is the bucket name in
    # environments/defaults.yaml.
    archive_bucket: str = Field(default="telemetry-archive", validation_alias="TELEMETRY_ARCHIVE_BUCKET")
    # Who runs the schema migrations; see telemetry_ingest/schema.py.
    migrate_on_start: bool = Field(default=True, validation_alias="MIGRATE_ON_START")

    topic_filter: str = Field(default="city/+/+/telemetry", validation_alias="INGEST_TOPIC_FILTER")
    # Replicas of the ingest share each broker's telemetry instead of each storing all of it.
    share_group: str = Field(default="telemetry-ingest", validation_alias="INGEST_SHARE_GROUP", pattern=r"^[\w-]*$")
    batch_size: int = Field(default=5000, ge=1, le=100_000, validation_alias="INGEST_BATCH_SIZE")
    batch_max_wait_s: float = Field(default=0.1, gt=0, le=10, validation_alias="INGEST_BATCH_MAX_WAIT_SECONDS")
    # Batches written at once (batching.py): a slow commit does not hold the readings behind it.
    # Each writer holds one database connection while it writes.
    writers: int = Field(default=2, ge=1, le=8, validation_alias="INGEST_WRITERS")
    queue_size: int = Field(default=50_000, ge=100, le=1_000_000, validation_alias="INGEST_QUEUE_SIZE")
    receive_maximum: int = Field(default=20_000, ge=1, le=65535, validation_alias="INGEST_RECEIVE_MAXIMUM")
    # Sessions outlive a crash for this long: the restarted container (same pod name, same
    # client id) gets every unacknowledged message again. A clean stop ends them at once.
    session_expiry_s: int = Field(default=300, ge=0, le=86400, validation_alias="INGEST_SESSION_EXPIRY_SECONDS")
    max_clock_skew_s: float = Field(default=300, ge=0, validation_alias="INGEST_MAX_CLOCK_SKEW_SECONDS")
    max_age_s: float = Field(default=7 * 86400, gt=0, validation_alias="INGEST_MAX_AGE_SECONDS")

    archive_interval_s: float = Field(default=60, gt=0, validation_alias="ARCHIVE_INTERVAL_SECONDS")
    archive_grace_s: float = Field(default=600, ge=0, validation_alias="ARCHIVE_GRACE_SECONDS")
    archive_lookback_hours: int = Field(default=48, ge=1, le=24 * 31, validation_alias="ARCHIVE_LOOKBACK_HOURS")

    def subscription_filter(self) -> str:
        return f"$share/{self.share_group}/{self.topic_filter}" if self.share_group else self.topic_filter
