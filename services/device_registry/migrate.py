"""``python -m device_registry.migrate``: apply the schema and exit (the migration Job, run as the
database's owner before a release rolls out; the running API connects with DML only)."""

from __future__ import annotations

from device_registry.database import migrate
from device_registry.settings import SERVICE
from service_common.logging import configure_logging
from service_common.migrations import connect_when_up
from service_common.settings import DatabaseSettings, ServiceSettings


def main() -> None:
    service = ServiceSettings()
    configure_logging(f"{SERVICE}-migrate", service.environment, service.log_level)
    database = DatabaseSettings()  # type: ignore[call-arg] - read from the environment
    with connect_when_up(database.conninfo(application=f"{SERVICE}-migrate")) as conn:
        migrate(conn)


if __name__ == "__main__":
    main()
