"""Routes of device-registry."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import FastAPI, HTTPException, Query, status

from device_registry.broker import CommandPublisher
from device_registry.database import AlreadyRegistered, DeviceStore, migrate
from device_registry.models import DEVICE_ID_PATTERN, CommandIn, CommandOut, Device, DeviceIn
from device_registry.settings import SERVICE, RegistrySettings
from service_common import database
from service_common.health import Check, health_router
from service_common.migrations import Migrator


def create_app(settings: RegistrySettings) -> FastAPI:
    pool = database.make_pool(settings.conninfo(application=SERVICE), name=f"{SERVICE}-db")
    store = DeviceStore(pool)
    publisher = CommandPublisher(settings, settings.command_timeout_s)
    migrator = Migrator(pool, migrate)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if settings.migrate_on_start:
            migrator.start()
        else:
            migrator.done.set()
        publisher.start()
        try:
            yield
        finally:
            publisher.stop()
            migrator.stop()
            pool.close()

    app = FastAPI(title="device-registry", lifespan=lifespan)
    checks = [Check("database", lambda: database.probe(pool)), Check("schema", migrator.probe), publisher.check()]
    app.include_router(health_router(lambda: checks))

    def known_device(device_id: str) -> Device:
        device = store.get(device_id)
        if device is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no device {device_id!r}")
        return device

    @app.post("/v1/devices", status_code=status.HTTP_201_CREATED, response_model_by_alias=True)
    def register(body: DeviceIn) -> Device:
        if body.device_class not in settings.device_classes:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_ENTITY,
                f"unknown device class {body.device_class!r}; known: {sorted(settings.device_classes)}",
            )
        try:
            return store.register(body)
        except AlreadyRegistered:
            raise HTTPException(status.HTTP_409_CONFLICT, f"device {body.id!r} is already registered") from None

    @app.get("/v1/devices", response_model_by_alias=True)
    def list_devices(
        device_class: Annotated[str | None, Query(alias="class")] = None,
        include_retired: bool = False,
        after: Annotated[str | None, Query(pattern=DEVICE_ID_PATTERN)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[Device]:
        return store.list(device_class=device_class, include_retired=include_retired, after=after, limit=limit)

    @app.get("/v1/devices/{device_id}", response_model_by_alias=True)
    def get_device(device_id: str) -> Device:
        return known_device(device_id)

    @app.delete("/v1/devices/{device_id}", response_model_by_alias=True)
    def retire(device_id: str) -> Device:
        device = store.retire(device_id)
        if device is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no device {device_id!r}")
        return device

    @app.post("/v1/devices/{device_id}/commands", status_code=status.HTTP_202_ACCEPTED)
    def send_command(device_id: str, body: CommandIn) -> CommandOut:
        device = known_device(device_id)
        if device.retired_at is not None:
            raise HTTPException(status.HTTP_409_CONFLICT, f"device {device_id!r} is retired")
        topic = (
            settings.device_classes[device.device_class].command_topic(device_id)
            if (device.device_class in settings.device_classes)
            else None
        )
        if topic is None:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_ENTITY, f"devices of class {device.device_class!r} receive no commands"
            )
        command_id, created_at = store.record_command(device_id, body.command, body.args, topic)
        payload = json.dumps(
            {"command_id": command_id, "command": body.command, "args": body.args, "issued_at": created_at.isoformat()}
        ).encode()
        reached = publisher.publish(topic, payload)
        store.command_sent(command_id, reached)
        if reached == 0:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "no broker accepted the command")
        return CommandOut(
            command_id=command_id, device_id=device_id, topic=topic, brokers_reached=reached,
            brokers_total=len(publisher.brokers),
        )  # fmt: skip

    return app
