"""Every APIRoute of an app, included routers walked into.

FastAPI (0.165) keeps each included router as one `_IncludedRouter` item in `app.routes`, so a
plain `isinstance(r, APIRoute)` filter over `app.routes` sees only the app's own few routes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute


def _flatten(routes: Iterable[Any]) -> Iterator[APIRoute]:
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif hasattr(route, "original_router"):
            yield from _flatten(route.original_router.routes)


def api_routes(app: FastAPI) -> list[APIRoute]:
    return list(_flatten(app.routes))
