"""Web pages of the composition root: the staff console (`/console`) and the privacy centre
(`/privacy`). Server-rendered Jinja2, a stylesheet and a few lines of own script; no build step."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from lethe.console import privacy, render, staff, static
from lethe.console.session import ConsoleForbidden, CsrfRefused, SignInRequired


def install(app: FastAPI) -> None:
    """Add the pages and the handlers that answer their refusals as pages, not problems."""

    @app.exception_handler(SignInRequired)
    async def _sign_in(_request: Request, exc: SignInRequired) -> Response:
        return RedirectResponse(f"/console/sign-in?next={quote(exc.next_path)}", status_code=303)

    @app.exception_handler(ConsoleForbidden)
    async def _forbidden(request: Request, _exc: ConsoleForbidden) -> HTMLResponse:
        return render.page(request, "forbidden.html", status=403, nav=staff.nav_for(request))

    @app.exception_handler(CsrfRefused)
    async def _csrf(request: Request, _exc: CsrfRefused) -> HTMLResponse:
        return render.page(request, "csrf.html", status=403, nav=[])

    app.include_router(static.router)
    app.include_router(staff.router)
    app.include_router(privacy.router)
