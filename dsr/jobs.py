"""Scheduled work of data-subject requests: the daily deadline alert, the outbox sweep."""

from __future__ import annotations

from datetime import datetime, timedelta

import structlog
from sqlalchemy import delete, select
from sqlalchemy.engine import Engine
from sqlmodel import col

from dsr.deadlines import DUE_SOON_DAYS
from dsr.models import CLOSED_STATUSES, DsrIntakeHit, DsrRequest
from dsr.notifier import Email, Notifier, sweep_outbox
from dsr.service import RATE_WINDOW
from records.db import unit_of_work

log = structlog.get_logger(__name__)

DEADLINE_ALERT_JOB = "dsr-deadline-alerts"
OUTBOX_SWEEP_JOB = "dsr-outbox-sweep"


def outbox_sweep(engine: Engine, now: datetime) -> dict[str, int]:
    """Codes and package links must not outlive their validity in the development outbox, nor
    an erased subject's address their erasure (whichever path erased them)."""
    with unit_of_work(engine) as session:
        dropped = sweep_outbox(session, now=now)
    return {"dropped": dropped}


def deadline_alerts(
    engine: Engine, notifier: Notifier, now: datetime, *, alert_to: str | None = None
) -> dict[str, int]:
    """Log every open request overdue or due within 7 days (ids only) and, when `alert_to` is
    set, mail the controller's mailbox one summary; drop stale intake counters. Returns the
    counts."""
    horizon = now + timedelta(days=DUE_SOON_DAYS)
    with unit_of_work(engine) as session:
        # Intake counters outlive their hour only until this job: nothing is kept longer.
        session.execute(delete(DsrIntakeHit).where(col(DsrIntakeHit.at) < now - RATE_WINDOW))
        rows = list(
            session.execute(
                select(DsrRequest)
                .where(
                    col(DsrRequest.status).not_in([s.value for s in CLOSED_STATUSES]),
                    col(DsrRequest.due_at) <= horizon,
                )
                .order_by(col(DsrRequest.due_at), col(DsrRequest.id))
            ).scalars()
        )
        overdue = [r for r in rows if r.due_at <= now]
        soon = [r for r in rows if r.due_at > now]
        for r in overdue:
            log.warning("dsr.deadline.overdue", request_id=str(r.id), due_at=r.due_at.isoformat())
        for r in soon:
            log.info("dsr.deadline.due_soon", request_id=str(r.id), due_at=r.due_at.isoformat())
        if alert_to and rows:
            lines = [
                f"{'OVERDUE ' if r.due_at <= now else 'due soon'} {r.id} {r.type} "
                f"due {r.due_at.isoformat()}"
                for r in rows
            ]
            notifier.send_email(
                session,
                Email(
                    to=alert_to,
                    subject=f"Data-subject requests: {len(overdue)} overdue, {len(soon)} due soon",
                    body="\n".join(lines) + "\n",
                ),
                now=now,
            )
    return {"overdue": len(overdue), "due_soon": len(soon)}
