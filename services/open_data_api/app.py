"""Routes of open-data-api (read-only)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Query, status
from fastapi.responses import StreamingResponse

from open_data_api.database import ReadingQueries
from open_data_api.query import BadRequest, check_range, parse_bucket
from open_data_api.settings import SERVICE, OpenDataSettings
from open_data_api.storage import Datasets, NotFound
from service_common import database, storage
from service_common.health import Check, health_router

METRIC_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"


def create_app(settings: OpenDataSettings) -> FastAPI:
    pool = database.make_pool(settings.conninfo(application=SERVICE, read_only=True), name=f"{SERVICE}-db")
    queries = ReadingQueries(pool, settings.statement_timeout_ms)
    s3 = storage.make_client(settings)
    datasets = Datasets(s3, settings.open_data_bucket)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            pool.close()

    app = FastAPI(title="open-data-api", lifespan=lifespan)
    app.include_router(
        health_router(
            lambda: [
                Check("database", lambda: database.probe(pool)),
                Check("storage", lambda: storage.probe_bucket(s3, settings.open_data_bucket)),
            ]
        )
    )

    @app.get("/v1/latest")
    def latest(
        domain: Annotated[str | None, Query(pattern=r"^[a-z][a-z0-9-]{0,31}$")] = None,
        since_hours: Annotated[float, Query(gt=0, le=24 * 31)] = 24,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    ) -> list[dict[str, Any]]:
        """The newest reading of every device that reported in the last ``since_hours``."""
        return queries.latest(domain=domain, since=timedelta(hours=since_hours), limit=limit)

    @app.get("/v1/devices/{device_id}/latest")
    def device_latest(device_id: str) -> dict[str, Any]:
        row = queries.device_latest(device_id)
        if row is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no readings of {device_id!r}")
        return row

    @app.get("/v1/devices/{device_id}/readings")
    def readings(
        device_id: str,
        start: datetime,
        end: datetime | None = None,
        bucket: str | None = None,
        metric: Annotated[str | None, Query(pattern=METRIC_PATTERN)] = None,
    ) -> dict[str, Any]:
        """Raw readings in [start, end), or with ``bucket`` (e.g. 5m) and ``metric`` the
        count/avg/min/max of that metric per bucket."""
        start, end = _aware(start), _aware(end or datetime.now(UTC))
        try:
            if bucket is None:
                check_range(end - start, timedelta(seconds=1), 10**12)
                return {"device_id": device_id, "readings": queries.raw(device_id, start, end, settings.max_points)}
            if metric is None:
                raise BadRequest("a bucketed query needs metric=<name>")
            step = parse_bucket(bucket)
            check_range(end - start, step, settings.max_points)
        except BadRequest as error:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, str(error)) from None
        return {
            "device_id": device_id,
            "metric": metric,
            "bucket": bucket,
            "buckets": queries.buckets(device_id, metric, start, end, step),
        }

    @app.get("/v1/datasets")
    def list_datasets(prefix: str = "") -> list[dict[str, Any]]:
        return datasets.list(prefix)

    @app.get("/v1/datasets/{name:path}")
    def download(name: str) -> StreamingResponse:
        try:
            chunks, content_type, length = datasets.open(name)
        except NotFound:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no dataset {name!r}") from None
        return StreamingResponse(chunks, media_type=content_type, headers={"Content-Length": str(length)})

    return app


def _aware(moment: datetime) -> datetime:
    """Times without an offset are taken as UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
