"""The privacy centre at `/privacy`: a data subject files a request, confirms it with the code
sent by e-mail, and follows it. Plain language; nothing about the subject is shown before the
code is entered, and what is shown then is what the public status endpoint shows.

After a good code the browser holds a signed cookie naming that one request for an hour; it is
not a key to anything else. With it the status page of an answered access or portability
request offers the package for download (here, or with the link sent by e-mail) for as long as
that link is valid; the download is audited like the link's, with the requester as actor.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Annotated, Literal

import structlog
from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from pydantic import TypeAdapter, ValidationError
from sqlalchemy.engine import Engine

from dsr import client_address as client_addresses
from dsr import package as packages
from dsr import rights
from dsr import service as dsr
from dsr.models import DsrRequest, RequestStatus, RequestType
from lethe.console import render
from lethe.console.i18n import language, translator
from lethe.console.session import csrf_protect, set_cookie, sign, unsign
from records.errors import DomainError
from records.http import NowDep, SessionDep, public
from records.types import EmailAddress

log = structlog.get_logger("lethe.console")

router = APIRouter(
    prefix="/privacy",
    include_in_schema=False,
    dependencies=[Depends(public), Depends(csrf_protect)],
)

PRIVACY_COOKIE = "lethe_privacy"
PRIVACY_TTL = timedelta(hours=1)
TYPES = [t.value for t in RequestType]
_EMAIL = TypeAdapter(EmailAddress)
LOCKED = "Too many wrong codes. For your safety this request is locked; please file a new one."
WRONG_CODE = "This code is not right, or it has expired. Please check the e-mail and try again."


def _config(request: Request) -> dsr.DsrConfig:
    config: dsr.DsrConfig = request.app.state.dsr
    return config


def _client(request: Request) -> str | None:
    # The same client address as the API's intake (forwarding headers of trusted proxies only).
    config = _config(request)
    return client_addresses.of_request(
        request, proxies=config.trusted_proxies, header=config.proxy_header
    )


@router.get("", response_class=HTMLResponse)
def home(request: Request) -> HTMLResponse:
    return render.page(request, "privacy/home.html", types=TYPES, form={}, error=None)


@router.post("/requests", response_model=None)
def file_request(
    request: Request,
    session: SessionDep,
    now: NowDep,
    type: Annotated[str, Form()] = "",
    email: Annotated[str, Form()] = "",
    details: Annotated[str, Form()] = "",
    field: Annotated[str, Form()] = "",
    value: Annotated[str, Form()] = "",
) -> Response:
    t = translator(language(request))
    form = {"type": type, "details": details, "field": field}
    error: str | None = None
    try:
        address = str(_EMAIL.validate_python(email.strip()))
    except ValidationError:
        error = t("Please enter a valid e-mail address.")
    if error is None and type not in TYPES:
        error = t("Please choose what you want us to do.")
    if error is None and type == "rectification" and not (field.strip() and value.strip()):
        error = t("Please say which information is wrong and what it should be.")
    if error is not None:
        return render.page(
            request, "privacy/home.html", status=422, types=TYPES, form=form, error=error
        )
    changes = {field.strip(): value.strip()} if type == "rectification" else None
    try:
        row = dsr.file_request(
            session,
            config=_config(request),
            type=RequestType(type),
            email=address,
            details=details.strip() or None,
            changes=changes,
            actor=None,
            client_address=_client(request),
            now=now,
        )
    except DomainError as exc:
        session.rollback()
        message = (
            t("Too many requests from here in the last hour. Please try again later.")
            if exc.status == 429
            else t("We could not accept this request. Please check the form.")
        )
        return render.page(
            request, "privacy/home.html", status=exc.status, types=TYPES, form=form, error=message
        )
    return RedirectResponse(f"/privacy/requests/{row.id}/verify", status_code=303)


def _find(session: SessionDep, request_id: uuid.UUID) -> DsrRequest | None:
    try:
        return dsr.get_request(session, request_id)
    except DomainError:
        return None


def _not_found(request: Request) -> HTMLResponse:
    return render.page(request, "privacy/not_found.html", status=404)


@router.get("/requests/{request_id}/verify", response_class=HTMLResponse)
def verify_page(request_id: uuid.UUID, request: Request, session: SessionDep) -> HTMLResponse:
    row = _find(session, request_id)
    if row is None:
        return _not_found(request)
    return render.page(request, "privacy/verify.html", row=row, error=None, mode="verify")


def _with_access(request: Request, row: DsrRequest, now: NowDep) -> RedirectResponse:
    response = RedirectResponse(f"/privacy/requests/{row.id}", status_code=303)
    token = sign(
        request,
        {"q": str(row.id), "p": "privacy", "exp": int((now + PRIVACY_TTL).timestamp())},
    )
    set_cookie(
        request,
        response,
        PRIVACY_COOKIE,
        token,
        max_age=int(PRIVACY_TTL.total_seconds()),
        path="/privacy",
    )
    return response


@router.post("/requests/{request_id}/verify", response_model=None)
def verify(
    request_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    now: NowDep,
    code: Annotated[str, Form()] = "",
    mode: Annotated[str, Form()] = "verify",
) -> Response:
    """`mode` verify: confirm a new request; status: the same code, later, to see the status."""
    row = _find(session, request_id)
    if row is None:
        return _not_found(request)
    t = translator(language(request))
    try:
        if mode == "status":
            dsr.check_code(
                session, config=_config(request), request=row, code=code.strip(), now=now,
                expire=False,
            )  # fmt: skip
        else:
            dsr.verify(
                session, config=_config(request), request_id=row.id, code=code.strip(), now=now
            )
    except dsr.CodeCheckFailed as failed:
        # Not rolled back: the failed attempt must count (dsr.service.verify).
        message = t(LOCKED if failed.error.status == 429 else WRONG_CODE)
        return render.page(
            request,
            "privacy/verify.html",
            status=failed.error.status,
            row=row,
            error=message,
            mode=mode,
        )
    log.info("privacy.code_accepted", request_id=str(row.id), mode=mode)
    return _with_access(request, row, now)


def _has_access(request: Request, row: DsrRequest, now: NowDep) -> bool:
    """The browser holds this centre's signed cookie for this very request, not expired."""
    claims = unsign(request, request.cookies.get(PRIVACY_COOKIE), now=now)
    return claims is not None and claims.get("p") == "privacy" and claims.get("q") == str(row.id)


PackageFormat = Literal["html", "json", "csv"]
_MEDIA = {
    "json": "application/json",
    "html": "text/html; charset=utf-8",
    "csv": "text/csv; charset=utf-8",
}
# The package page is ours but styled inline; it runs nothing and loads nothing.
_PACKAGE_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'none'; "
    "frame-ancestors 'none'; base-uri 'none'"
)


def package_formats(row: DsrRequest, *, now: datetime) -> list[str]:
    """The formats the status page offers: none unless the package link is still valid."""
    ready = (
        row.status in (RequestStatus.completed.value, RequestStatus.partial.value)
        and row.subject_id is not None
        and row.package_token_expires_at is not None
        and now < row.package_token_expires_at
    )
    if not ready:
        return []
    if row.type == RequestType.access.value:
        return ["html", "json"]
    if row.type == RequestType.portability.value:
        return ["json", "csv"]
    return []


@router.get("/requests/{request_id}", response_class=HTMLResponse)
def status_page(
    request_id: uuid.UUID, request: Request, session: SessionDep, now: NowDep
) -> HTMLResponse:
    row = _find(session, request_id)
    if row is None:
        return _not_found(request)
    if not _has_access(request, row, now):
        return render.page(request, "privacy/verify.html", row=row, error=None, mode="status")
    return render.page(
        request,
        "privacy/status.html",
        row=row,
        now=now,
        outcome=rights.public_outcome(row),
        closed=not dsr.is_open(row),
        package_until=row.package_token_expires_at,
        formats=package_formats(row, now=now),
    )


@router.get("/requests/{request_id}/package/{format}", response_model=None)
def download_package(
    request_id: uuid.UUID,
    format: PackageFormat,
    request: Request,
    session: SessionDep,
    now: NowDep,
) -> Response:
    """The package, for the browser that entered this request's code, while its link is valid.

    Authorised by the signed cookie alone: no token and nothing personal in the URL.
    """
    row = _find(session, request_id)
    if row is None:
        return _not_found(request)
    if not _has_access(request, row, now):
        # The code form of this request: without it the package is not shown.
        return RedirectResponse(f"/privacy/requests/{row.id}", status_code=303)
    if format not in package_formats(row, now=now):
        return render.page(request, "privacy/package_gone.html", status=410, row=row)
    config = _config(request)
    try:
        plan = packages.plan(session, config=config, request=row, format=format, now=now)
    except DomainError:
        return render.page(request, "privacy/package_gone.html", status=410, row=row)
    packages.record_download(session, request=row, plan=plan, actor="requester", now=now)
    log.info("privacy.package_downloaded", request_id=str(row.id), format=format)
    engine: Engine = request.app.state.engine
    disposition = "inline" if format == "html" else "attachment"
    return StreamingResponse(
        packages.render(engine, config=config, plan=plan, now=now),
        media_type=_MEDIA[format],
        headers={
            "Cache-Control": "no-store",
            "Content-Disposition": f'{disposition}; filename="request-{row.id}.{format}"',
            "X-Content-Type-Options": "nosniff",
            "X-Frame-Options": "DENY",
            "Referrer-Policy": "no-referrer",
            "Content-Security-Policy": _PACKAGE_CSP,
        },
    )


@router.get("/status", response_class=HTMLResponse)
def find_page(request: Request) -> HTMLResponse:
    return render.page(request, "privacy/find.html", error=None)


@router.post("/status", response_model=None)
def find(request: Request, reference: Annotated[str, Form()] = "") -> Response:
    try:
        request_id = uuid.UUID(reference.strip())
    except ValueError:
        t = translator(language(request))
        return render.page(
            request,
            "privacy/find.html",
            status=422,
            error=t("This reference is not in the right form. It is in the e-mail we sent you."),
        )
    return RedirectResponse(f"/privacy/requests/{request_id}", status_code=303)
