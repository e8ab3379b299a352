"""Request ids, access log lines and Prometheus metrics by route template (never by raw path)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable

import structlog
from fastapi import FastAPI, Request, Response
from prometheus_client import CollectorRegistry, Counter, Histogram

from lethe.errors import problem

log = structlog.get_logger("lethe.http")


class HttpMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "lethe_http_requests_total",
            "HTTP requests by method, route template and status.",
            ["method", "route", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "lethe_http_request_duration_seconds",
            "HTTP request latency by method and route template.",
            ["method", "route"],
            registry=registry,
        )


def _route_template(request: Request) -> str:
    route = request.scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


def install_request_middleware(app: FastAPI, metrics: HttpMetrics) -> None:
    @app.middleware("http")
    async def _observe(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        incoming = request.headers.get("x-request-id", "")
        # Accept a caller's id only when it looks like one; anything else could carry data.
        request_id = incoming if _looks_like_id(incoming) else uuid.uuid4().hex
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status = 500
        try:
            try:
                response = await call_next(request)
            except Exception as exc:  # rendered here so the 500 carries the request id too
                log.error("http.unexpected_error", error_type=type(exc).__name__, exc_info=exc)
                response = problem(
                    500,
                    "internal",
                    "Internal error",
                    "an unexpected error occurred",
                    request_id=request_id,
                )
            status = response.status_code
            response.headers["X-Request-ID"] = request_id
            return response
        finally:
            elapsed = time.perf_counter() - started
            route = _route_template(request)
            metrics.requests.labels(request.method, route, str(status)).inc()
            metrics.latency.labels(request.method, route).observe(elapsed)
            log.info(
                "http.request",
                method=request.method,
                route=route,
                status=status,
                duration_ms=round(elapsed * 1000, 2),
            )


def _looks_like_id(value: str) -> bool:
    return 8 <= len(value) <= 64 and all(c.isalnum() or c == "-" for c in value)
