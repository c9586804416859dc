"""``python -m open_data_api``: the container's command."""

from open_data_api.app import create_app
from open_data_api.settings import SERVICE, OpenDataSettings
from service_common.server import serve


def main() -> None:
    settings = OpenDataSettings()  # type: ignore[call-arg] - read from the environment
    serve(SERVICE, settings, lambda: create_app(settings))


if __name__ == "__main__":
    main()
