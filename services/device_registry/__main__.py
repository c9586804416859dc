"""``python -m device_registry``: the container's command."""

from device_registry.app import create_app
from device_registry.settings import SERVICE, RegistrySettings
from service_common.server import serve


def main() -> None:
    settings = RegistrySettings()  # type: ignore[call-arg] - read from the environment
    serve(SERVICE, settings, lambda: create_app(settings))


if __name__ == "__main__":
    main()
