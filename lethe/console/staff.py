"""The staff console at `/console`: sign in with an API key, then what the key's role may see.

Pages call the domain services; a refused action (a domain error) rolls its transaction back and
comes back to the page as a message, so nothing half-done is committed.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, BackgroundTasks, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlmodel import Session, col, select

from audit_log import checkpoints
from audit_log import service as audit
from audit_log import verify as audit_verify
from audit_log.signing import NoteSigner
from dsr import rights
from dsr import service as dsr
from dsr.models import RequestStatus
from dsr.schemas import ExtendBody, RejectBody, RejectionGround
from lethe import auth
from lethe.console import charts, queries, render
from lethe.console.i18n import language, translator
from lethe.console.session import (
    SESSION_COOKIE,
    ConsoleUser,
    clear_cookie,
    console_requires,
    csrf_protect,
    set_cookie,
    sign,
    start_session,
    unsign,
)
from policies import service as policies
from records.db import utc_now
from records.errors import DomainError, InvalidInputError
from records.http import STAFF_ROLES, NowDep, Role, SessionDep, public
from retention import certificate, holds, purge, report
from retention.models import HoldScope, PurgeRun, RunStatus
from retention.schemas import HoldCreate, HoldScopeIn

log = structlog.get_logger("lethe.console")

router = APIRouter(prefix="/console", include_in_schema=False, dependencies=[Depends(csrf_protect)])

Anyone = Annotated[ConsoleUser, Depends(console_requires(*STAFF_ROLES))]
RequestReaders = Annotated[ConsoleUser, Depends(console_requires(Role.controller, Role.dpo))]
Controller = Annotated[ConsoleUser, Depends(console_requires(Role.controller))]
Dpo = Annotated[ConsoleUser, Depends(console_requires(Role.dpo))]
HoldReaders = Annotated[ConsoleUser, Depends(console_requires(Role.dpo, Role.controller))]
Auditors = Annotated[ConsoleUser, Depends(console_requires(Role.dpo, Role.auditor))]

PAGES: tuple[tuple[str, str, frozenset[Role]], ...] = (
    ("/console", "Overview", frozenset(STAFF_ROLES)),
    ("/console/requests", "Requests", frozenset({Role.controller, Role.dpo})),
    ("/console/retention", "Retention", frozenset({Role.dpo, Role.auditor})),
    ("/console/holds", "Legal holds", frozenset({Role.dpo, Role.controller})),
    ("/console/purges", "Purge runs", frozenset({Role.dpo, Role.auditor})),
    ("/console/audit", "Audit trail", frozenset({Role.dpo, Role.auditor})),
    ("/console/policies", "Policy registry", frozenset(STAFF_ROLES)),
)


def _nav(user: ConsoleUser) -> list[tuple[str, str]]:
    return [(href, label) for href, label, roles in PAGES if user.role in roles]


def nav_for(request: Request) -> list[tuple[str, str]]:
    user: ConsoleUser | None = getattr(request.state, "console_user", None)
    return _nav(user) if user else []


FLASH_COOKIE = "lethe_flash"


def _back(
    request: Request, path: str, *, ok: str | None = None, error: str | None = None
) -> RedirectResponse:
    """Post/redirect/get with a one-shot signed message: a fixed text, or a domain error's
    detail (no personal data, by the domain's own rule). Signed, so no link can put words in
    the console's mouth."""
    response = RedirectResponse(path, status_code=303)
    claims = {"ok": ok, "error": error, "exp": int(utc_now().timestamp()) + 120}
    set_cookie(request, response, FLASH_COOKIE, sign(request, claims), max_age=120)
    return response


def _refused(
    request: Request, session: Session, path: str, exc: DomainError | ValidationError
) -> RedirectResponse:
    session.rollback()
    if isinstance(exc, DomainError):
        log.info("console.action.refused", error_code=exc.code, status=exc.status)
        return _back(request, path, error=exc.detail)
    fields = ", ".join(".".join(str(p) for p in e["loc"]) for e in exc.errors())
    return _back(request, path, error=f"invalid fields: {fields}")


def _act(
    request: Request, session: Session, path: str, action: Callable[[], object], *, ok: str
) -> RedirectResponse:
    """Run one console action and come back to `path` with `ok`, or with the refusal."""
    try:
        action()
    except (DomainError, ValidationError) as exc:
        return _refused(request, session, path, exc)
    return _back(request, path, ok=ok)


def _page(request: Request, user: ConsoleUser, template: str, **context: Any) -> HTMLResponse:
    flash = unsign(request, request.cookies.get(FLASH_COOKIE), now=utc_now()) or {}
    response = render.page(
        request,
        template,
        nav=_nav(user),
        ok=flash.get("ok"),
        error=flash.get("error"),
        **context,
    )
    if FLASH_COOKIE in request.cookies:
        clear_cookie(request, response, FLASH_COOKIE)
    return response


# --- sign-in ------------------------------------------------------------------------------------


@router.get("/sign-in", dependencies=[Depends(public)], response_class=HTMLResponse)
def sign_in_page(request: Request) -> HTMLResponse:
    return render.page(
        request, "sign_in.html", next=_safe_next(request.query_params.get("next")), error=None
    )


def _safe_next(value: str | None) -> str:
    if value and value.startswith("/console") and "//" not in value and "\\" not in value:
        return value
    return "/console"


@router.post("/sign-in", dependencies=[Depends(public)], response_model=None)
def sign_in(
    request: Request,
    session: SessionDep,
    now: NowDep,
    api_key: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/console",
) -> Response:
    row = auth.verify_key(session, api_key.strip()) if api_key else None
    if row is None:
        log.info("console.sign_in.refused")
        lang = translator(language(request))
        return render.page(
            request,
            "sign_in.html",
            status=401,
            next=_safe_next(next),
            error=lang("This API key is not valid."),
        )
    response = RedirectResponse(_safe_next(next), status_code=303)
    start_session(request, response, row, now=now)
    audit.append(
        session, action="lethe.console.signed_in", actor=f"key:{row.id}", now=now,
        details={"role": row.role},
    )  # fmt: skip
    log.info("console.signed_in", key_id=str(row.id), role=row.role)
    return response


@router.post("/sign-out", dependencies=[Depends(public)])
def sign_out(request: Request) -> RedirectResponse:
    response = RedirectResponse("/console/sign-in", status_code=303)
    clear_cookie(request, response, SESSION_COOKIE)
    return response


# --- overview -------------------------------------------------------------------------------------


@router.get("", response_class=HTMLResponse)
def overview(request: Request, user: Anyone, session: SessionDep, now: NowDep) -> HTMLResponse:
    cards: dict[str, object] = {}
    if user.role in (Role.controller, Role.dpo):
        overdue, soon = dsr.deadline_counts(session, now=now)
        cards.update(requests_overdue=overdue, requests_soon=soon)
    if user.role in (Role.dpo, Role.auditor):
        totals = report.build(session, now=now)["totals"]
        cards.update(retention_overdue=totals["overdue"], retention_held=totals["held"])
        paused = purge.paused_run(session)
        cards.update(paused_run=paused.id if paused else None)
    if user.role in (Role.dpo, Role.controller):
        cards.update(active_holds=len(holds.list_holds(session, active=True)))
    return _page(request, user, "overview.html", cards=cards)


# --- requests -------------------------------------------------------------------------------------


@router.get("/requests", response_class=HTMLResponse)
def requests_page(
    request: Request,
    user: RequestReaders,
    session: SessionDep,
    now: NowDep,
    show: str = "open",
) -> HTMLResponse:
    rows = dsr.list_requests(session, overdue=show == "overdue", now=now)
    if show in ("open", "overdue", "soon"):
        rows = [r for r in rows if dsr.is_open(r)]
    if show == "soon":
        rows = [r for r in rows if now < r.due_at <= now + _week()]
    overdue, soon = dsr.deadline_counts(session, now=now)
    return _page(
        request,
        user,
        "requests.html",
        rows=rows,
        show=show,
        now=now,
        overdue_count=overdue,
        soon_count=soon,
        week=_week(),
        is_overdue=lambda r: dsr.is_overdue(r, now),
    )


def _week() -> timedelta:
    return timedelta(days=7)


@router.get("/requests/{request_id}", response_class=HTMLResponse)
def request_detail(
    request_id: uuid.UUID,
    request: Request,
    user: RequestReaders,
    session: SessionDep,
    now: NowDep,
) -> HTMLResponse:
    row = dsr.get_request(session, request_id)
    return _page(
        request,
        user,
        "request.html",
        row=row,
        now=now,
        overdue=dsr.is_overdue(row, now),
        steps=queries.request_steps(session, row.id),
        notices=dsr.notices_of(session, row.id),
        grounds=[g.value for g in RejectionGround],
        can_act=user.role is Role.controller and dsr.is_open(row),
        can_extend=row.extended_months is None and now < row.original_due_at,
        awaiting_assessment=row.status == RequestStatus.awaiting_assessment.value,
        restricted=row.type in ("restriction", "objection") and row.outcome is not None,
    )


def _config(request: Request) -> dsr.DsrConfig:
    config: dsr.DsrConfig = request.app.state.dsr
    return config


@router.post("/requests/{request_id}/extend")
def extend_request(
    request_id: uuid.UUID,
    request: Request,
    user: Controller,
    session: SessionDep,
    now: NowDep,
    months: Annotated[int, Form()] = 0,
    reason: Annotated[str, Form()] = "",
) -> RedirectResponse:
    def extend() -> None:
        body = ExtendBody.model_validate({"months": months, "reason": reason})
        dsr.extend(
            session,
            config=_config(request),
            request_id=request_id,
            months=body.months,
            reason=body.reason,
            actor=user.actor,
            now=now,
        )

    path = f"/console/requests/{request_id}"
    return _act(request, session, path, extend, ok="Deadline extended; the requester is told.")


@router.post("/requests/{request_id}/process")
def process_request(
    request_id: uuid.UUID,
    request: Request,
    user: Controller,
    session: SessionDep,
    now: NowDep,
    upheld: Annotated[str, Form()] = "",
    reason: Annotated[str, Form()] = "",
) -> RedirectResponse:
    def process() -> None:
        rights.process(
            session,
            config=_config(request),
            request_id=request_id,
            actor=user.actor,
            upheld={"yes": True, "no": False}.get(upheld),
            reason=reason.strip() or None,
            now=now,
        )

    path = f"/console/requests/{request_id}"
    return _act(request, session, path, process, ok="Request processed.")


@router.post("/requests/{request_id}/reject")
def reject_request(
    request_id: uuid.UUID,
    request: Request,
    user: Controller,
    session: SessionDep,
    now: NowDep,
    ground: Annotated[str, Form()] = "",
    reason: Annotated[str, Form()] = "",
) -> RedirectResponse:
    def reject() -> None:
        body = RejectBody.model_validate({"ground": ground, "reason": reason})
        rights.reject(
            session,
            config=_config(request),
            request_id=request_id,
            reason=body.reason,
            ground=body.ground.value,
            actor=user.actor,
            now=now,
        )

    return _act(
        request,
        session,
        f"/console/requests/{request_id}",
        reject,
        ok="Request rejected; the requester is told why and how to complain.",
    )


@router.post("/requests/{request_id}/lift")
def lift_restriction(
    request_id: uuid.UUID, request: Request, user: Controller, session: SessionDep, now: NowDep
) -> RedirectResponse:
    def lift() -> None:
        rights.lift_restriction(
            session, config=_config(request), request_id=request_id, actor=user.actor, now=now
        )

    return _act(
        request,
        session,
        f"/console/requests/{request_id}",
        lift,
        ok="Restriction step recorded (the subject is told before it is lifted).",
    )


# --- retention ------------------------------------------------------------------------------------


@router.get("/retention", response_class=HTMLResponse)
def retention_page(
    request: Request, user: Auditors, session: SessionDep, now: NowDep
) -> HTMLResponse:
    data = report.build(session, now=now)
    lang = translator(language(request))
    return _page(
        request,
        user,
        "retention.html",
        data=data,
        deletions_chart=charts.bars(
            queries.deletions_per_month(session, now=now),
            title=lang("Records destroyed per month, last 12 months"),
            label_id="chart-deleted",
        ),
        due_chart=charts.bars(
            queries.due_per_month(session, now=now),
            title=lang("Records falling due per month, next 12 months"),
            label_id="chart-due",
            colour="#7a4b00",
        ),
    )


# --- holds ----------------------------------------------------------------------------------------


@router.get("/holds", response_class=HTMLResponse)
def holds_page(request: Request, user: HoldReaders, session: SessionDep) -> HTMLResponse:
    return _page(
        request,
        user,
        "holds.html",
        active=holds.list_holds(session, active=True),
        released=holds.list_holds(session, active=False, limit=50),
        kinds=[k.value for k in HoldScope],
        scope_of=lambda h: holds.scope_of(h).as_dict(),
        can_edit=user.role is Role.dpo,
    )


_SCOPE_FIELD = {"subject": "subject_id", "record": "record_id", "policy": "policy"}


@router.post("/holds")
def place_hold(
    request: Request,
    user: Dpo,
    session: SessionDep,
    now: NowDep,
    scope_kind: Annotated[str, Form()] = "",
    scope_value: Annotated[str, Form()] = "",
    reason: Annotated[str, Form()] = "",
    case_reference: Annotated[str, Form()] = "",
) -> RedirectResponse:
    def place() -> None:
        body = HoldCreate(
            scope=HoldScopeIn.model_validate(
                {_SCOPE_FIELD.get(scope_kind, scope_kind): scope_value.strip() or None}
            ),
            reason=reason.strip(),
            case_reference=case_reference.strip() or None,
        )
        holds.place_hold(
            session,
            scope=holds.Scope.parse(body.scope.model_dump()),
            reason=body.reason,
            case_reference=body.case_reference,
            actor=user.actor,
            now=now,
        )

    return _act(request, session, "/console/holds", place, ok="Legal hold placed.")


@router.post("/holds/{hold_id}/release")
def release_hold(
    hold_id: uuid.UUID,
    request: Request,
    user: Dpo,
    session: SessionDep,
    now: NowDep,
    reason: Annotated[str, Form()] = "",
) -> RedirectResponse:
    def release() -> None:
        if not reason.strip():
            raise InvalidInputError("a reason is required to release a hold")
        holds.release_hold(
            session, hold_id=hold_id, reason=reason.strip(), actor=user.actor, now=now
        )

    return _act(request, session, "/console/holds", release, ok="Legal hold released.")


# --- purge runs -----------------------------------------------------------------------------------


def _purge_context(request: Request) -> purge.PurgeContext:
    ctx: purge.PurgeContext | None = getattr(request.app.state, "purge_context", None)
    return ctx or purge.PurgeContext(signer=getattr(request.app.state, "audit_signer", None))


@router.get("/purges", response_class=HTMLResponse)
def purges_page(request: Request, user: Auditors, session: SessionDep) -> HTMLResponse:
    runs = list(session.exec(select(PurgeRun).order_by(col(PurgeRun.created_at).desc()).limit(50)))
    return _page(
        request,
        user,
        "purges.html",
        runs=runs,
        counts={r.id: purge.counts(session, r.id) for r in runs},
        paused=[r for r in runs if r.status == RunStatus.paused.value],
        can_approve=user.role is Role.dpo,
    )


@router.post("/purges")
def start_dry_run(
    user: Dpo, request: Request, session: SessionDep, now: NowDep
) -> RedirectResponse:
    ctx = _purge_context(request)
    run = purge.create_run(
        session, dry_run=True, trigger="console", actor=user.actor, now=now, config=ctx.config
    )
    purge.plan_dry_run(session, run=run, now=now, ctx=ctx)
    return _back(request, f"/console/purges/{run.id}", ok="Dry run planned.")


PLAN_SAMPLE = 20  # record ids shown per outcome of a dry run's plan


@router.get("/purges/{run_id}", response_class=HTMLResponse)
def purge_detail(
    run_id: uuid.UUID, request: Request, user: Auditors, session: SessionDep, now: NowDep
) -> HTMLResponse:
    run = purge.get_run(session, run_id)
    # What the DPO approves or what a dry run found, per processing record, rule and action: a
    # paused run has acted on nothing yet, so its plan is what is due at the horizon approval
    # would use (approve_run widens it to now); a dry run's is its recorded plan.
    paused = run.status == RunStatus.paused.value
    plan: dict[str, Any] | None = None
    if paused:
        rows = queries.due_by_rule(session, horizon=max(run.horizon_at, now))
    elif run.dry_run:
        plan = purge.plan(session, run.id, sample=PLAN_SAMPLE)
        rows = plan["rules"]
    else:
        rows = purge.by_rule(session, run.id)
    return _page(
        request,
        user,
        "purge.html",
        run=run,
        counts=purge.counts(session, run.id),
        by_rule=rows,
        paused=paused,
        plan=plan,
        can_approve=user.role is Role.dpo and paused,
    )


@router.post("/purges/{run_id}/approve")
def approve_run(
    run_id: uuid.UUID,
    request: Request,
    background: BackgroundTasks,
    user: Dpo,
    session: SessionDep,
    now: NowDep,
) -> RedirectResponse:
    path = f"/console/purges/{run_id}"
    try:
        run = purge.approve_run(session, run_id=run_id, actor=user.actor, now=now)
    except DomainError as exc:
        return _refused(request, session, path, exc)
    ctx = _purge_context(request)
    background.add_task(purge.execute, request.app.state.engine, run.id, clock=utc_now, ctx=ctx)
    return _back(request, path, ok="Run approved; it is running now.")


@router.get("/purges/{run_id}/certificate", response_class=HTMLResponse)
def purge_certificate(
    run_id: uuid.UUID, request: Request, user: Auditors, session: SessionDep
) -> HTMLResponse:
    run = purge.get_run(session, run_id)
    signer = _purge_context(request).signer
    signed = certificate.signed(run, verifier_key=signer.verifier_key() if signer else None)
    return _page(
        request,
        user,
        "certificate.html",
        run=run,
        signed=signed,
        pretty=json.dumps(signed["certificate"], indent=2, sort_keys=True),
    )


# --- audit ----------------------------------------------------------------------------------------


def _signer(request: Request) -> NoteSigner:
    signer: NoteSigner = request.app.state.audit_signer
    return signer


@router.get("/audit", response_class=HTMLResponse)
def audit_page(request: Request, user: Auditors, session: SessionDep) -> HTMLResponse:
    return _audit(request, user, session, result=None)


def _audit(
    request: Request, user: ConsoleUser, session: Session, *, result: object
) -> HTMLResponse:
    signer = _signer(request)
    return _page(
        request,
        user,
        "audit.html",
        latest=checkpoints.latest(session),
        size=audit.size(session),
        verifier_key=signer.verifier_key(),
        result=result,
    )


@router.post("/audit/verify", response_class=HTMLResponse)
def audit_verify_now(request: Request, user: Auditors, session: SessionDep) -> HTMLResponse:
    signer = _signer(request)
    result = audit_verify.verify_database(
        session,
        verifier_key=signer.verifier_key(),
        origin=signer.name,
        witness_dir=None,
        update_witness=False,
    )
    log.info("console.audit.verified", problems=len(result.problems), entries=result.entries)
    return _audit(request, user, session, result=result)


# --- policies -------------------------------------------------------------------------------------


@router.get("/policies", response_class=HTMLResponse)
def policies_page(request: Request, user: Anyone, session: SessionDep) -> HTMLResponse:
    documents = policies.current_documents(session)
    known = {d.reference for _, d in documents}
    return _page(
        request,
        user,
        "policies.html",
        documents=documents,
        unresolved={d.reference: policies.unresolved_references(d, known) for _, d in documents},
    )
