"""/healthz (the process lives) and /readyz (its dependencies answer), shared by every service.

The chart's probes use /healthz/live and /healthz/ready today (charts/city-api/values.yaml);
both spellings are served so either chart setting works.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from fastapi import APIRouter
from fastapi.responses import JSONResponse

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Check:
    """One dependency: ``probe`` returns a short detail or raises when it does not answer."""

    name: str
    probe: Callable[[], str]


def run_checks(checks: list[Check], timeout_s: float = 3.0) -> tuple[bool, dict[str, dict[str, object]]]:
    """Run every check in parallel with a deadline; (all ok, per-check result)."""
    results: dict[str, dict[str, object]] = {}
    if not checks:
        return True, results
    with ThreadPoolExecutor(max_workers=len(checks), thread_name_prefix="readyz") as pool:
        futures = {check.name: (pool.submit(_timed, check.probe), time.monotonic()) for check in checks}
        for name, (future, _started) in futures.items():
            try:
                detail, elapsed = future.result(timeout=timeout_s)
                results[name] = {"ok": True, "detail": detail, "ms": round(elapsed * 1000, 1)}
            except TimeoutError:
                results[name] = {"ok": False, "detail": f"no answer in {timeout_s}s"}
            except Exception as error:  # noqa: BLE001 - any failure of a dependency means not ready
                results[name] = {"ok": False, "detail": f"{type(error).__name__}: {error}"[:300]}
    return all(result["ok"] for result in results.values()), results


def _timed(probe: Callable[[], str]) -> tuple[str, float]:
    started = time.monotonic()
    detail = probe()
    return detail, time.monotonic() - started


def health_router(checks: Callable[[], list[Check]]) -> APIRouter:
    """Routes for liveness and readiness; ``checks`` is called per request (dependencies may be
    created in the app's lifespan, after the router)."""
    router = APIRouter(tags=["health"])

    @router.get("/healthz")
    @router.get("/healthz/live", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "alive"}

    @router.get("/readyz")
    @router.get("/healthz/ready", include_in_schema=False)
    def readyz() -> JSONResponse:
        ok, results = run_checks(checks())
        if not ok:
            log.warning("not ready", extra={"checks": results})
        return JSONResponse({"ready": ok, "checks": results}, status_code=200 if ok else 503)

    return router
