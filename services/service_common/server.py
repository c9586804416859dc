"""Run a service: JSON logs, uvicorn on PORT, graceful shutdown on SIGTERM.

uvicorn handles SIGTERM and SIGINT itself: it stops accepting connections, lets in-flight
requests finish (up to ``shutdown_timeout_s``), then runs the app's lifespan shutdown, where each
service stops its own work (the ingest flushes its queue before it lets go of the broker).
"""

from __future__ import annotations

import signal
from collections.abc import Callable

import uvicorn
from fastapi import FastAPI

from service_common.logging import configure_logging
from service_common.settings import ServiceSettings


def serve(name: str, settings: ServiceSettings, make_app: Callable[[], FastAPI]) -> None:
    configure_logging(name, settings.environment, settings.log_level)
    app = make_app()
    config = uvicorn.Config(
        app,
        host="0.0.0.0",  # noqa: S104 - inside a Pod; the Service and NetworkPolicies decide who reaches it
        port=settings.port,
        log_config=None,  # keep our JSON handlers
        access_log=True,
        proxy_headers=True,
        timeout_graceful_shutdown=int(settings.shutdown_timeout_s),
        server_header=False,
    )
    # uvicorn re-raises the signal it caught once it has shut down, to the handler that was set
    # before it; with this one the process then ends with status 0 after a clean shutdown
    # instead of dying by SIGTERM (status 143), so "exit 0" means "drained".
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _after_shutdown)
    uvicorn.Server(config).run()


def _after_shutdown(signum: int, _frame: object) -> None:
    """Runs only after uvicorn's graceful shutdown has completed (it owns the signals until then)."""
