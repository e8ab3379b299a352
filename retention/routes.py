"""HTTP routes of legal holds, disposition runs and the retention report (thin: services do it).

A real run is created in the request's transaction (so a paused run or a conflict is answered at
once) and worked after the response, one transaction per batch, outside the request's write lock;
`GET /v1/purges/{id}` shows its progress. A dry run is planned inside the request.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, BackgroundTasks, Depends, Query, Request, Response
from sqlmodel import Session

from records.db import utc_now
from records.http import Actor, NowDep, Role, SessionDep, requires
from records.pagination import NEXT_LINK_HEADER, PageDep
from records.types import QueryBool
from retention import certificate, holds, purge, report
from retention.models import LegalHold, PurgeRun, RunStatus
from retention.schemas import (
    CertificateRead,
    HoldCreate,
    HoldRead,
    HoldRelease,
    PurgeCounts,
    PurgeCreate,
    PurgePlan,
    PurgeRunRead,
)

router = APIRouter(prefix="/v1")


def hold_read(hold: LegalHold) -> HoldRead:
    return HoldRead(
        id=hold.id,
        scope=holds.scope_of(hold).as_dict(),
        reason=hold.reason,
        case_reference=hold.case_reference,
        subject_reason=holds.subject_reason_of(hold),
        owner=hold.owner,
        placed_at=hold.placed_at,
        active=hold.released_at is None,
        released_at=hold.released_at,
        released_by=hold.released_by,
        release_reason=hold.release_reason,
    )


def run_read(session: Session, run: PurgeRun) -> PurgeRunRead:
    tally = purge.counts(session, run.id)
    return PurgeRunRead(
        id=run.id,
        status=run.status,
        dry_run=run.dry_run,
        counts=PurgeCounts(**tally),
        trigger=run.trigger,
        created_at=run.created_at,
        horizon_at=run.horizon_at,
        started_at=run.started_at,
        finished_at=run.finished_at,
        planned_deletions=run.planned_deletions,
        pause_reason=run.pause_reason,
        approved_by=run.approved_by,
        approved_at=run.approved_at,
        certificate_sha256=run.certificate_sha256,
        planned=PurgePlan(**purge.plan(session, run.id, tally=tally)) if run.dry_run else None,
    )


def _context(request: Request) -> purge.PurgeContext:
    ctx: purge.PurgeContext | None = getattr(request.app.state, "purge_context", None)
    if ctx is None:
        ctx = purge.PurgeContext(signer=getattr(request.app.state, "audit_signer", None))
    return ctx


@router.post(
    "/holds",
    status_code=201,
    tags=["holds"],
    description=(
        "Place a legal hold. `reason` and `case_reference` are internal (staff only, never in "
        "the audit trail or in answers to data subjects); `subject_reason` is what a data "
        "subject whose data the hold keeps is told, by default a generic legal-claims / "
        "legal-obligation text (EUDPR Art. 19(3)(b),(e); Art. 25(8))."
    ),
)
def place_hold(
    body: HoldCreate,
    session: SessionDep,
    now: NowDep,
    actor: Annotated[Actor, Depends(requires(Role.dpo))],
) -> HoldRead:
    scope = holds.Scope.parse(body.scope.model_dump())
    hold = holds.place_hold(
        session,
        scope=scope,
        reason=body.reason,
        case_reference=body.case_reference,
        subject_reason=body.subject_reason,
        actor=actor,
        now=now,
    )
    return hold_read(hold)


@router.post("/holds/{hold_id}/release", tags=["holds"])
def release_hold(
    hold_id: uuid.UUID,
    body: HoldRelease,
    session: SessionDep,
    now: NowDep,
    actor: Annotated[Actor, Depends(requires(Role.dpo))],
) -> HoldRead:
    hold = holds.release_hold(session, hold_id=hold_id, reason=body.reason, actor=actor, now=now)
    return hold_read(hold)


@router.get(
    "/holds",
    tags=["holds"],
    dependencies=[Depends(requires(Role.dpo, Role.controller))],
    responses={200: {"headers": NEXT_LINK_HEADER}},
)
def list_holds(
    session: SessionDep, page: PageDep, active: QueryBool | None = None
) -> list[HoldRead]:
    found = holds.list_holds(
        session, active=active, after=page.position(holds.HOLD_ORDER), limit=page.fetch
    )
    return [hold_read(h) for h in page.finish(found, holds.HOLD_ORDER)]


@router.post(
    "/purges",
    status_code=201,
    tags=["retention"],
    description=(
        "Start a disposition run. `dry_run: true` changes no record, key or subject: it answers "
        "`status: planned` with `counts` and `planned` (counts per processing record, rule and "
        "rule version and action, and the pseudonymous ids of the records each outcome would "
        "touch, the first `sample_limit` with their total)."
    ),
)
def start_purge(
    body: PurgeCreate,
    request: Request,
    background: BackgroundTasks,
    session: SessionDep,
    now: NowDep,
    actor: Annotated[Actor, Depends(requires(Role.dpo))],
) -> PurgeRunRead:
    ctx = _context(request)
    running = None if body.dry_run else purge.unfinished_run(session)
    if running is not None:
        run = running
    else:
        run = purge.create_run(
            session, dry_run=body.dry_run, trigger="api", actor=actor, now=now, config=ctx.config
        )
        if body.dry_run:
            run = purge.plan_dry_run(session, run=run, now=now, ctx=ctx)
    if run.status == RunStatus.running.value:
        background.add_task(purge.execute, request.app.state.engine, run.id, clock=utc_now, ctx=ctx)
    return run_read(session, run)


@router.get(
    "/purges/{run_id}",
    tags=["retention"],
    dependencies=[Depends(requires(Role.dpo, Role.auditor))],
)
def get_purge(run_id: uuid.UUID, session: SessionDep) -> PurgeRunRead:
    return run_read(session, purge.get_run(session, run_id))


@router.get(
    "/purges/{run_id}/certificate",
    tags=["retention"],
    dependencies=[Depends(requires(Role.dpo, Role.auditor))],
)
def get_certificate(run_id: uuid.UUID, request: Request, session: SessionDep) -> CertificateRead:
    run = purge.get_run(session, run_id)
    signer = _context(request).signer
    return CertificateRead(
        **certificate.signed(run, verifier_key=signer.verifier_key() if signer else None)
    )


@router.post("/purges/{run_id}/approve", tags=["retention"])
def approve_purge(
    run_id: uuid.UUID,
    request: Request,
    background: BackgroundTasks,
    session: SessionDep,
    now: NowDep,
    actor: Annotated[Actor, Depends(requires(Role.dpo))],
) -> PurgeRunRead:
    ctx = _context(request)
    run = purge.approve_run(session, run_id=run_id, actor=actor, now=now)
    background.add_task(purge.execute, request.app.state.engine, run.id, clock=utc_now, ctx=ctx)
    return run_read(session, run)


@router.get(
    "/reports/retention",
    tags=["retention"],
    dependencies=[Depends(requires(Role.dpo, Role.auditor))],
    response_model=None,
    responses={
        200: {
            "description": "The report: JSON, or CSV or HTML with `?format=`.",
            "content": {
                "application/json": {"schema": {"type": "object"}},
                "text/csv": {"schema": {"type": "string"}},
                "text/html": {"schema": {"type": "string"}},
            },
        }
    },
)
def retention_report(
    session: SessionDep,
    now: NowDep,
    format: Annotated[Literal["json", "csv", "html"], Query()] = "json",
) -> Response | dict[str, object]:
    data = report.build(session, now=now)
    if format == "csv":
        return Response(report.to_csv(data), media_type="text/csv; charset=utf-8")
    if format == "html":
        return Response(report.to_html(data), media_type="text/html; charset=utf-8")
    return data
