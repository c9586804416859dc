"""``python -m telemetry_ingest``: the container's command."""

from service_common.server import serve
from telemetry_ingest.app import create_app
from telemetry_ingest.settings import SERVICE, IngestSettings


def main() -> None:
    settings = IngestSettings()  # type: ignore[call-arg] - read from the environment
    serve(SERVICE, settings, lambda: create_app(settings))


if __name__ == "__main__":
    main()
