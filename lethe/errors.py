"""RFC 9457 problem details for every error the API returns, with no personal data in them."""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry, Counter
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException

from records.db import busy_code, is_busy_error
from records.errors import DomainError
from records.types import value_free_error

PROBLEM = "application/problem+json"
TYPE_BASE = "https://lethe.dev/problems/"
log = structlog.get_logger("lethe.errors")


def problem(status: int, code: str, title: str, detail: str, **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {
        "type": TYPE_BASE + code,
        "title": title,
        "status": status,
        "detail": detail,
        **extra,
    }
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def _validation_errors(exc: RequestValidationError) -> list[dict[str, str]]:
    # Name the field and the reason; never the value (`input`), it may be personal data, nor a
    # key the client made up (records.types.value_free_error, shared with the import report).
    out = []
    for err in exc.errors():
        field, reason = value_free_error(err, skip=("body",))
        out.append({"field": field, "reason": reason})
    return out


# Seconds a client is told to wait when the database is busy: about one import batch.
BUSY_RETRY_AFTER = 2


def _install_db_busy_handler(app: FastAPI) -> None:
    """A lock held past the busy timeout (or no pooled connection free) is a 503 with
    Retry-After, counted; any other database error goes on to the 500 handler unchanged."""
    registry: CollectorRegistry | None = getattr(app.state, "metrics_registry", None)
    rejected = Counter(
        "lethe_db_busy_rejections_total",
        "Requests answered 503 because the database stayed busy past the busy timeout.",
        ["route", "code"],
        registry=registry,
    )

    async def _busy(request: Request, exc: Exception) -> JSONResponse:
        if not is_busy_error(exc):
            raise exc
        route = getattr(request.scope.get("route"), "path", None)
        route = route if isinstance(route, str) else "unmatched"
        code = busy_code(exc)
        rejected.labels(route, code).inc()
        log.warning("db.busy", route=route, code=code)
        response = problem(
            503, "database-busy", "Database busy", "the database is busy; retry in a moment"
        )
        response.headers["Retry-After"] = str(BUSY_RETRY_AFTER)
        return response

    app.add_exception_handler(sa_exc.DBAPIError, _busy)
    app.add_exception_handler(sa_exc.TimeoutError, _busy)


def install_error_handlers(app: FastAPI) -> None:
    _install_db_busy_handler(app)

    @app.exception_handler(DomainError)
    async def _domain(_request: Request, exc: DomainError) -> JSONResponse:
        return problem(exc.status, exc.code, exc.title, exc.detail, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _validation_errors(exc)
        fields = ", ".join(e["field"] for e in errors) or "body"
        return problem(
            422, "validation", "Invalid request", f"invalid fields: {fields}", errors=errors
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        titles = {404: "Not found", 405: "Method not allowed"}
        title = titles.get(exc.status_code, "HTTP error")
        return problem(exc.status_code, f"http-{exc.status_code}", title, title)

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.error("http.unexpected_error", error_type=type(exc).__name__, exc_info=exc)
        return problem(
            500, "internal", "Internal error", "an unexpected error occurred; see the request id"
        )
