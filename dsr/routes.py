"""HTTP routes of data-subject requests (API.md "Data-subject requests"). Thin: services decide."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from sqlalchemy.engine import Engine

from dsr import client_address as addresses
from dsr import package as packages
from dsr import rights
from dsr import service as svc
from dsr.errors import PackageAccessError, WrongCodeError
from dsr.models import DsrRequest, RequestStatus, RequestType
from dsr.schemas import (
    DisclosureCreate,
    DisclosureRead,
    ExtendBody,
    NoticeRead,
    ProcessBody,
    RejectBody,
    RequestCreate,
    RequestRead,
    RequestReceipt,
    StatusRead,
    VerifyBody,
)
from records.errors import DomainError, InvalidInputError
from records.http import Actor, NowDep, Role, SessionDep, optional_actor, public, requires
from records.pagination import NEXT_LINK_HEADER, PageDep
from records.types import QueryBool

router = APIRouter(prefix="/v1", tags=["requests"])

OptionalActor = Annotated[Actor | None, Depends(optional_actor)]
Controller = Annotated[Actor, Depends(requires(Role.controller))]


def _config(request: Request) -> svc.DsrConfig:
    config: svc.DsrConfig = request.app.state.dsr
    return config


def _client_address(request: Request) -> str | None:
    """The address the intake limits count (`LETHE_TRUSTED_PROXIES`, `LETHE_PROXY_HEADER`)."""
    config = _config(request)
    return addresses.of_request(request, proxies=config.trusted_proxies, header=config.proxy_header)


def _problem(exc: DomainError) -> JSONResponse:
    """A problem answered *without* raising, so the session still commits (an attempt count)."""
    return JSONResponse(
        {
            "type": "https://lethe.dev/problems/" + exc.code,
            "title": exc.title,
            "status": exc.status,
            "detail": exc.detail,
            **exc.extra,
        },
        status_code=exc.status,
        media_type="application/problem+json",
    )


def _read(session: SessionDep, request: DsrRequest, now: Any) -> RequestRead:
    return RequestRead(
        id=request.id,
        type=request.type,
        status=request.status,
        locked=svc.is_locked(request),
        channel=request.channel,
        subject_id=request.subject_id,
        received_at=request.received_at,
        original_due_at=request.original_due_at,
        due_at=request.due_at,
        overdue=svc.is_overdue(request, now),
        extended_months=request.extended_months,
        extension_reason=request.extension_reason,
        verified_at=request.verified_at,
        outcome=request.outcome,
        outcome_details=request.outcome_details,
        closed_at=request.closed_at,
        notices=[
            NoticeRead(
                recipient=n.recipient,
                channel=n.channel,
                status=n.status,
                reason=n.reason,
                record_count=n.record_count,
                created_at=n.created_at,
            )
            for n in svc.notices_of(session, request.id)
        ],
    )


@router.post(
    "/requests",
    status_code=202,
    response_model=RequestReceipt,
    dependencies=[Depends(public)],
    summary="File a data-subject request (public; a controller key files on the subject's behalf)",
)
def file_request(
    body: RequestCreate,
    request: Request,
    session: SessionDep,
    now: NowDep,
    actor: OptionalActor,
) -> RequestReceipt:
    staff = actor if actor is not None and actor.role is Role.controller else None
    if body.identity_verified and staff is None:
        raise InvalidInputError("identity_verified: only a controller's staff intake may set it")
    row = svc.file_request(
        session,
        config=_config(request),
        type=body.type,
        email=str(body.email),
        details=body.details,
        changes=body.changes,
        actor=staff,
        client_address=_client_address(request),
        identity_verified=body.identity_verified,
        now=now,
    )
    return RequestReceipt(
        id=row.id, status=row.status, received_at=row.received_at, due_at=row.due_at
    )


@router.post(
    "/requests/{request_id}/verify",
    dependencies=[Depends(public)],
    response_model=None,
    summary="Confirm a request with its one-time code",
    description=(
        "With `LETHE_OTP_MAX_ATTEMPTS` = N, exactly N wrong codes are answered 400 "
        "(`attempts_left` in the problem says how many remain); the N-th locks the request "
        "(status `locked`). After that every code, the right one included, is answered 429 "
        "without being checked. A resend keeps the count; an expired code is 400 and does not "
        "count. Only the controller's staff can send a fresh code to a locked request "
        "(`POST /v1/requests/{id}/reissue`, audited)."
    ),
)
def verify(
    request_id: uuid.UUID, body: VerifyBody, request: Request, session: SessionDep, now: NowDep
) -> dict[str, str] | JSONResponse:
    try:
        row = svc.verify(
            session, config=_config(request), request_id=request_id, code=body.code, now=now
        )
    except svc.CodeCheckFailed as failed:
        return _problem(failed.error)
    return {"status": row.status}


@router.post(
    "/requests/{request_id}/resend",
    status_code=202,
    dependencies=[Depends(public)],
    summary="Send a new one-time code to the address of a request awaiting verification",
    description=(
        "Counted against the hourly intake limits (per e-mail and per client address: 429 "
        "beyond them). The wrong-code count carries over; a locked request is 429."
    ),
)
def resend(
    request_id: uuid.UUID, request: Request, session: SessionDep, now: NowDep
) -> dict[str, str]:
    row = svc.resend_code(
        session,
        config=_config(request),
        request_id=request_id,
        client_address=_client_address(request),
        now=now,
    )
    return {"status": row.status}


@router.post(
    "/requests/{request_id}/reissue",
    status_code=202,
    summary="Staff: unlock a request and send a fresh one-time code (audited)",
)
def reissue(
    request_id: uuid.UUID, request: Request, session: SessionDep, now: NowDep, actor: Controller
) -> dict[str, str]:
    row = svc.reissue_code(
        session, config=_config(request), request_id=request_id, actor=actor, now=now
    )
    return {"status": row.status}


@router.get(
    "/requests/{request_id}/status",
    dependencies=[Depends(public)],
    response_model=None,
    summary="Status, due date and outcome: with the one-time code, or a controller key",
)
def status(
    request_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    now: NowDep,
    actor: OptionalActor,
    code: str | None = None,
) -> StatusRead | JSONResponse:
    row = svc.get_request(session, request_id)
    if actor is None or actor.role not in (Role.controller, Role.dpo):
        if not code:
            return _problem(WrongCodeError("the one-time code or a controller key is required"))
        try:
            svc.check_code(
                session, config=_config(request), request=row, code=code, now=now, expire=False
            )
        except svc.CodeCheckFailed as failed:
            return _problem(failed.error)
    return StatusRead(
        id=row.id,
        type=row.type,
        status=row.status,
        locked=svc.is_locked(row),
        received_at=row.received_at,
        due_at=row.due_at,
        extended=row.extended_months is not None,
        outcome=row.outcome,
        outcome_details=rights.public_outcome(row),
    )


@router.get(
    "/requests",
    response_model=list[RequestRead],
    dependencies=[Depends(requires(Role.controller, Role.dpo))],
    responses={200: {"headers": NEXT_LINK_HEADER}},
)
def list_requests(
    session: SessionDep,
    now: NowDep,
    page: PageDep,
    status: RequestStatus | None = None,
    overdue: QueryBool = False,
    type: RequestType | None = None,
) -> list[RequestRead]:
    rows = svc.list_requests(
        session,
        status=status.value if status else None,
        type=type.value if type else None,
        overdue=overdue,
        now=now,
        after=page.position(svc.REQUEST_ORDER),
        limit=page.fetch,
    )
    return [_read(session, r, now) for r in page.finish(rows, svc.REQUEST_ORDER)]


@router.get(
    "/requests/{request_id}",
    response_model=RequestRead,
    dependencies=[Depends(requires(Role.controller, Role.dpo))],
)
def get_request(request_id: uuid.UUID, session: SessionDep, now: NowDep) -> RequestRead:
    return _read(session, svc.get_request(session, request_id), now)


@router.post("/requests/{request_id}/extend", response_model=RequestRead)
def extend(
    request_id: uuid.UUID,
    body: ExtendBody,
    request: Request,
    session: SessionDep,
    now: NowDep,
    actor: Controller,
) -> RequestRead:
    row = svc.extend(
        session,
        config=_config(request),
        request_id=request_id,
        months=body.months,
        reason=body.reason,
        actor=actor,
        now=now,
    )
    return _read(session, row, now)


@router.post("/requests/{request_id}/process", response_model=RequestRead)
def process(
    request_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    now: NowDep,
    actor: Controller,
    body: ProcessBody | None = None,
) -> RequestRead:
    row = rights.process(
        session,
        config=_config(request),
        request_id=request_id,
        actor=actor,
        upheld=body.upheld if body else None,
        reason=body.reason if body else None,
        now=now,
    )
    return _read(session, row, now)


@router.post("/requests/{request_id}/lift", response_model=RequestRead)
def lift(
    request_id: uuid.UUID, request: Request, session: SessionDep, now: NowDep, actor: Controller
) -> RequestRead:
    """Lift a restriction: the first call tells the subject, a later call lifts (Art. 20(3))."""
    row = rights.lift_restriction(
        session, config=_config(request), request_id=request_id, actor=actor, now=now
    )
    return _read(session, row, now)


@router.post("/requests/{request_id}/reject", response_model=RequestRead)
def reject(
    request_id: uuid.UUID,
    body: RejectBody,
    request: Request,
    session: SessionDep,
    now: NowDep,
    actor: Controller,
) -> RequestRead:
    row = rights.reject(
        session,
        config=_config(request),
        request_id=request_id,
        reason=body.reason,
        ground=body.ground.value,
        actor=actor,
        now=now,
    )
    return _read(session, row, now)


@router.get(
    "/requests/{request_id}/package",
    dependencies=[Depends(public)],
    response_model=None,
    summary="The access or portability package: the download token, or a controller or DPO key",
    responses={
        200: {
            "description": "The package: JSON, or HTML or CSV with `?format=`.",
            "content": {
                "application/json": {"schema": {"type": "object"}},
                "text/html": {"schema": {"type": "string"}},
                "text/csv": {"schema": {"type": "string"}},
            },
        }
    },
)
def package(
    request_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    now: NowDep,
    actor: OptionalActor,
    token: str | None = None,
    format: Annotated[Literal["json", "html", "csv"], Query()] = "json",
) -> Response:
    config = _config(request)
    row = svc.get_request(session, request_id)
    # The requester's token opens everything; among staff keys the DPO's opens everything too
    # (the one staff role that reads restricted data), a controller's opens the package with
    # restricted data withheld, and no other role's opens it.
    by_token = packages.token_valid(row, token, now=now)
    staff = actor if actor is not None and actor.role in (Role.controller, Role.dpo) else None
    if staff is None and not by_token:
        raise PackageAccessError("a valid download token or a controller or DPO key is required")
    plan = packages.plan(
        session,
        config=config,
        request=row,
        format=format,
        now=now,
        withhold_restricted=staff is not None and staff.role is Role.controller and not by_token,
    )
    packages.record_download(
        session,
        request=row,
        plan=plan,
        actor=staff.ref if staff is not None else "requester",
        now=now,
    )
    engine: Engine = request.app.state.engine
    media = {
        "json": "application/json",
        "html": "text/html; charset=utf-8",
        "csv": "text/csv; charset=utf-8",
    }[format]
    return StreamingResponse(
        packages.render(engine, config=config, plan=plan, now=now),
        media_type=media,
        headers={
            "Cache-Control": "no-store",
            "Content-Disposition": f'inline; filename="request-{row.id}.{format}"',
        },
    )


@router.post(
    "/disclosures",
    status_code=201,
    response_model=DisclosureRead,
    summary="Record that records were disclosed to a recipient (EUDPR Art. 21)",
)
def disclose(
    body: DisclosureCreate,
    session: SessionDep,
    now: NowDep,
    actor: Annotated[Actor, Depends(requires(Role.controller, Role.ingest))],
) -> DisclosureRead:
    rows = rights.record_disclosures(
        session,
        record_ids=body.record_ids,
        recipient=body.recipient,
        channel=body.channel,
        address=body.address,
        disclosed_at=body.disclosed_at or now,
        actor=actor,
        now=now,
    )
    return DisclosureRead(ids=[r.id for r in rows])
