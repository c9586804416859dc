"""Routes of telemetry-ingest: health, stats and Prometheus metrics (no public API)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service_common.health import health_router
from telemetry_ingest.service import IngestService
from telemetry_ingest.settings import IngestSettings


def create_app(settings: IngestSettings) -> FastAPI:
    service = IngestService(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        service.start()
        try:
            yield
        finally:
            service.stop()

    app = FastAPI(title="telemetry-ingest", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.service = service
    app.include_router(health_router(service.checks))

    @app.get("/v1/stats")
    def stats() -> dict[str, Any]:
        return service.stats()

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
