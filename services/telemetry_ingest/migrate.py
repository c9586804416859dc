"""``python -m telemetry_ingest.migrate``: apply the schema and exit (for a Job run as the owner)."""

from __future__ import annotations

from service_common.logging import configure_logging
from service_common.migrations import connect_when_up
from service_common.settings import DatabaseSettings, ServiceSettings
from telemetry_ingest.schema import migrate
from telemetry_ingest.settings import SERVICE


def main() -> None:
    service = ServiceSettings()
    configure_logging(f"{SERVICE}-migrate", service.environment, service.log_level)
    database = DatabaseSettings()  # type: ignore[call-arg] - read from the environment
    with connect_when_up(database.conninfo(application=f"{SERVICE}-migrate")) as conn:
        migrate(conn)


if __name__ == "__main__":
    main()
