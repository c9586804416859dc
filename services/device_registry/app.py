"""Routes of device-registry."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, status

from device_registry.auth import OperatorTokens
from device_registry.broker import CommandPublisher
from device_registry.database import AlreadyRegistered, DeviceStore, migrate, require_schema
from device_registry.models import DEVICE_ID_PATTERN, CommandIn, CommandOut, Device, DeviceIn
from device_registry.settings import SERVICE, RegistrySettings
from service_common import database
from service_common.health import Check, health_router
from service_common.migrations import Migrator

log = logging.getLogger(__name__)


def create_app(settings: RegistrySettings) -> FastAPI:
    pool = database.make_pool(settings.conninfo(application=SERVICE), name=f"{SERVICE}-db")
    store = DeviceStore(pool)
    publisher = CommandPublisher(settings, settings.command_timeout_s)
    # Without MIGRATE_ON_START the release's migration Job owns the schema: wait until it is there.
    migrator = Migrator(pool, migrate if settings.migrate_on_start else require_schema)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        migrator.start()
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
    # Everything under /v1 is an operator's (register, retire, command, and the inventory of
    # devices with their locations); the health routes above stay open for the probes.
    operator = OperatorTokens(settings.operator_tokens)
    # `client: str = Depends(operator)` below, not Annotated: with postponed annotations FastAPI
    # resolves an annotation in the module's globals, where this app's `operator` is not.
    api = APIRouter(dependencies=[Depends(operator)])

    def known_device(device_id: str) -> Device:
        device = store.get(device_id)
        if device is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no device {device_id!r}")
        return device

    @api.post("/v1/devices", status_code=status.HTTP_201_CREATED, response_model_by_alias=True)
    def register(body: DeviceIn, client: str = Depends(operator)) -> Device:
        if body.device_class not in settings.device_classes:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_ENTITY,
                f"unknown device class {body.device_class!r}; known: {sorted(settings.device_classes)}",
            )
        try:
            device = store.register(body)
        except AlreadyRegistered:
            raise HTTPException(status.HTTP_409_CONFLICT, f"device {body.id!r} is already registered") from None
        log.info("device registered", extra={"device_id": body.id, "operator_client": client})
        return device

    @api.get("/v1/devices", response_model_by_alias=True)
    def list_devices(
        device_class: Annotated[str | None, Query(alias="class")] = None,
        include_retired: bool = False,
        after: Annotated[str | None, Query(pattern=DEVICE_ID_PATTERN)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[Device]:
        return store.list(device_class=device_class, include_retired=include_retired, after=after, limit=limit)

    @api.get("/v1/devices/{device_id}", response_model_by_alias=True)
    def get_device(device_id: str) -> Device:
        return known_device(device_id)

    @api.delete("/v1/devices/{device_id}", response_model_by_alias=True)
    def retire(device_id: str, client: str = Depends(operator)) -> Device:
        device = store.retire(device_id)
        if device is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no device {device_id!r}")
        log.info("device retired", extra={"device_id": device_id, "operator_client": client})
        return device

    @api.post("/v1/devices/{device_id}/commands", status_code=status.HTTP_202_ACCEPTED)
    def send_command(device_id: str, body: CommandIn, client: str = Depends(operator)) -> CommandOut:
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
        log.info("command sent", extra={"device_id": device_id, "command_id": command_id, "operator_client": client})
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

    app.include_router(api)
    return app
