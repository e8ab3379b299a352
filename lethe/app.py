"""The composition root: `create_app(settings)` builds everything; nothing happens at import."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from sqlalchemy import text

from audit_log import routes as audit_routes
from dsr import routes as dsr_routes
from lethe import auth, console
from lethe.errors import install_error_handlers, problem
from lethe.limits import RequestLimits
from lethe.logging import configure_logging
from lethe.observability import HttpMetrics, install_request_middleware
from lethe.settings import Settings
from lethe.wiring import Wiring, build_wiring
from policies import routes as policy_routes
from records import routes as record_routes
from records.db import make_engine
from records.http import Role, public, requires
from records.problems import EVERY_OPERATION
from retention import ingest_routes
from retention import routes as retention_routes

log = structlog.get_logger("lethe.app")


def create_app(settings: Settings | None = None, *, wiring: Wiring | None = None) -> FastAPI:
    settings = settings or Settings()
    configure_logging(settings.log_level, settings.log_format)
    settings.ensure_data_dir()
    engine = make_engine(
        settings.effective_database_url, busy_timeout=settings.database_busy_timeout_seconds
    )
    registry = CollectorRegistry()
    wiring = wiring or build_wiring(
        settings, engine, registry, scheduler=settings.scheduler == "on"
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        wiring.start()
        log.info("lethe.started", scheduler=settings.scheduler)
        try:
            yield
        finally:
            wiring.stop()
            engine.dispose()

    app = FastAPI(
        title="Lethe",
        version="1",
        summary="Data retention and data-subject rights under the GDPR and the EUDPR",
        lifespan=lifespan,
        responses=EVERY_OPERATION,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.authenticate = auth.authenticate
    app.state.metrics_registry = registry
    wiring.install(app)

    install_error_handlers(app)
    # Inside the request-id middleware, so a refused request is logged and counted too.
    app.add_middleware(
        RequestLimits,
        max_body_bytes=settings.max_body_bytes,
        max_import_bytes=settings.max_import_bytes,
    )
    install_request_middleware(app, HttpMetrics(registry))

    @app.get("/healthz", dependencies=[Depends(public)], tags=["service"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", dependencies=[Depends(public)], tags=["service"], response_model=None)
    def readyz() -> JSONResponse | dict[str, str]:
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:
            log.warning("readyz.database_unavailable", error_type=type(exc).__name__)
            return problem(503, "not-ready", "Not ready", "the database does not answer")
        return {"status": "ready"}

    metrics_deps = (
        [Depends(public)] if settings.metrics_public else [Depends(requires(Role.auditor))]
    )

    @app.get(
        "/metrics",
        dependencies=metrics_deps,
        tags=["service"],
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}},
    )
    def metrics(request: Request) -> Response:
        wiring.refresh_metrics()
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    for router in (
        policy_routes.router,
        record_routes.router,
        ingest_routes.router,
        audit_routes.router,
        retention_routes.router,
        dsr_routes.router,
    ):
        app.include_router(router)
    console.install(app)  # the staff console (/console) and the privacy centre (/privacy)
    return app
