"""Typed settings, read once at start from the environment the chart sets.

The names are exactly what infra/smartnation/program/components/city_apis.py puts into the
API's connections ConfigMap and the Secrets it references (see services/README.md). Every
service composes the groups it uses; a missing required variable stops the process at start
with the variable's name, instead of failing on the first request.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MQTT_SCHEMES = {"mqtt": 1883, "mqtts": 8883}


class ServiceSettings(BaseSettings):
    """Settings every service reads: where it listens and which environment it serves."""

    model_config = SettingsConfigDict(case_sensitive=True, extra="ignore", frozen=True, populate_by_name=True)

    port: int = Field(default=8080, ge=1, le=65535, validation_alias="PORT")
    environment: str = Field(default="local", validation_alias="SMARTNATION_ENVIRONMENT")
    log_level: str = Field(default="INFO", validation_alias="LOG_LEVEL", pattern="^(DEBUG|INFO|WARNING|ERROR)$")
    shutdown_timeout_s: float = Field(default=20.0, gt=0, le=120, validation_alias="SHUTDOWN_TIMEOUT_SECONDS")
    """How long in-flight requests and queued work get after SIGTERM (under the Pod's 30 s grace)."""


class BrokerUrl(str):
    """An MQTT URL (mqtt://host:port or mqtts://host:port), checked at start."""

    @property
    def host(self) -> str:
        return urlsplit(self).hostname or ""

    @property
    def port(self) -> int:
        parts = urlsplit(self)
        return parts.port or MQTT_SCHEMES[parts.scheme]

    @property
    def tls(self) -> bool:
        return urlsplit(self).scheme == "mqtts"


def parse_broker_url(value: str) -> BrokerUrl:
    parts = urlsplit(value.strip())
    if parts.scheme not in MQTT_SCHEMES or not parts.hostname:
        raise ValueError(f"expected mqtt://host[:port] or mqtts://host[:port], got {value!r}")
    if parts.username or parts.password:
        raise ValueError("credentials belong in MQTT_USERNAME/MQTT_PASSWORD, not in the URL")
    if parts.path not in ("", "/"):
        raise ValueError(f"an MQTT URL has no path, got {value!r}")
    return BrokerUrl(value.strip())


class BrokerSettings(BaseSettings):
    """The broker: MQTT_URL (the Service) and, with broker_all_pods, MQTT_BROKER_URLS (each pod)."""

    model_config = SettingsConfigDict(case_sensitive=True, extra="ignore", frozen=True, populate_by_name=True)

    mqtt_url: str = Field(validation_alias="MQTT_URL")
    mqtt_broker_urls: str = Field(default="", validation_alias="MQTT_BROKER_URLS")
    mqtt_username: str = Field(validation_alias="MQTT_USERNAME", min_length=1)
    mqtt_password: SecretStr = Field(validation_alias="MQTT_PASSWORD")

    @field_validator("mqtt_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        return str(parse_broker_url(value))

    @field_validator("mqtt_broker_urls")
    @classmethod
    def _check_urls(cls, value: str) -> str:
        urls = [parse_broker_url(item) for item in value.split(",") if item.strip()]
        if len(set(urls)) != len(urls):
            raise ValueError(f"a broker URL is listed twice: {value!r}")
        return ",".join(urls)

    def broker_urls(self) -> tuple[BrokerUrl, ...]:
        """Every broker pod when the program lists them, else the one Service URL."""
        if self.mqtt_broker_urls:
            return tuple(BrokerUrl(url) for url in self.mqtt_broker_urls.split(","))
        return (BrokerUrl(self.mqtt_url),)


class DatabaseSettings(BaseSettings):
    """PostgreSQL: hosts and database from the ConfigMap, role from the role's Secret.

    libpq still reads its own PG* variables (PGSSLMODE, PGSSLROOTCERT, ...) if the program ever
    sets them, because psycopg passes through libpq.
    """

    model_config = SettingsConfigDict(case_sensitive=True, extra="ignore", frozen=True, populate_by_name=True)

    pghost: str = Field(validation_alias="PGHOST", min_length=1)
    pghost_readonly: str = Field(default="", validation_alias="PGHOST_READONLY")
    pgport: int = Field(default=5432, ge=1, le=65535, validation_alias="PGPORT")
    pgdatabase: str = Field(validation_alias="PGDATABASE", min_length=1)
    pguser: str = Field(validation_alias="PGUSER", min_length=1)
    pgpassword: SecretStr = Field(validation_alias="PGPASSWORD")

    def conninfo(self, *, application: str, read_only: bool = False) -> dict[str, object]:
        """Keyword arguments for psycopg.connect / ConnectionPool(kwargs=...)."""
        host = (self.pghost_readonly or self.pghost) if read_only else self.pghost
        info: dict[str, object] = {
            "host": host,
            "port": self.pgport,
            "dbname": self.pgdatabase,
            "user": self.pguser,
            "password": self.pgpassword.get_secret_value(),
            "application_name": application,
            "connect_timeout": 5,
        }
        if read_only:
            # Belt and braces: the role's grants already forbid writes.
            info["options"] = "-c default_transaction_read_only=on"
        return info


class StorageSettings(BaseSettings):
    """S3 (MinIO): S3_ENDPOINT from the ConfigMap, the storage user's keys from its Secret."""

    model_config = SettingsConfigDict(case_sensitive=True, extra="ignore", frozen=True, populate_by_name=True)

    s3_endpoint: str = Field(validation_alias="S3_ENDPOINT", pattern=r"^https?://[^/\s]+/?$")
    aws_access_key_id: str = Field(validation_alias="AWS_ACCESS_KEY_ID", min_length=1)
    aws_secret_access_key: SecretStr = Field(validation_alias="AWS_SECRET_ACCESS_KEY")
    # MinIO ignores the region but the S3 signature needs one.
    aws_region: str = Field(default="us-east-1", validation_alias=AliasChoices("AWS_REGION", "AWS_DEFAULT_REGION"))
