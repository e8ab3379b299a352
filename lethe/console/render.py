"""Jinja2 pages: one environment, autoescaped, with the language and CSRF token of the request."""

from __future__ import annotations

from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from lethe.console import i18n, session

TEMPLATES = Path(__file__).parent / "templates"


@cache
def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _when
    env.filters["day"] = _day
    return env


def _when(value: datetime | None) -> str:
    return "—" if value is None else value.strftime("%Y-%m-%d %H:%M UTC")


def _day(value: datetime | None) -> str:
    return "—" if value is None else value.strftime("%Y-%m-%d")


def page(
    request: Request,
    template: str,
    *,
    status: int = 200,
    csrf_nonce: str | None = None,
    **context: Any,
) -> HTMLResponse:
    """Render `template`; forms get the CSRF token of `csrf_nonce` (the session's, or the
    pre-session cookie's, made here when missing)."""
    lang = i18n.language(request)
    user = getattr(request.state, "console_user", None)
    fresh_pre = False
    if csrf_nonce is None and user is not None:
        csrf_nonce = user.nonce
    if csrf_nonce is None:
        existing = request.cookies.get(session.PRE_COOKIE)
        csrf_nonce = session.pre_nonce(request)
        fresh_pre = existing != csrf_nonce
    html = (
        environment()
        .get_template(template)
        .render(
            _=i18n.translator(lang),
            lang=lang,
            user=user,
            path=request.url.path,
            csrf=Markup(  # noqa: S704 - both parts are ours: a fixed name and an urlsafe token
                '<input type="hidden" name="csrf_token" value="'
                + session.csrf_token(request, csrf_nonce)
                + '">'
            ),
            **context,
        )
    )
    response = HTMLResponse(html, status_code=status, headers=_headers())
    if fresh_pre:
        session.set_cookie(
            request,
            response,
            session.PRE_COOKIE,
            csrf_nonce,
            max_age=int(session.PRE_TTL.total_seconds()),
        )
    if request.query_params.get("lang") in i18n.LANGUAGES:
        response.set_cookie(i18n.LANG_COOKIE, lang, max_age=31_536_000, samesite="strict", path="/")
    return response


def _headers() -> dict[str, str]:
    return {
        "Cache-Control": "no-store",
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Content-Security-Policy": (
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
            "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        ),
    }
