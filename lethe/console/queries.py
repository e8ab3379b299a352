"""Read-only counts the console's pages draw that no domain service answers by itself.

Month buckets are computed as one `SUM(CASE …)` per month in a single statement, which means the
same on SQLite and PostgreSQL (no dialect date functions) and reads through the `due_at` index.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any

from sqlalchemy import Integer, and_, case, func, select
from sqlmodel import Session, col

from audit_log.models import AuditEntry
from records.models import PersonalRecord
from retention.models import PurgeBatch
from retention.purge import ELIGIBLE


def month_starts(now: datetime, *, back: int = 0, ahead: int = 0) -> list[datetime]:
    """First instants (UTC) of consecutive months, `back` months before now's to `ahead` after."""
    year, month = now.year, now.month
    out = []
    for offset in range(-back, ahead + 1):
        m = month - 1 + offset
        out.append(datetime(year + m // 12, m % 12 + 1, 1, tzinfo=UTC))
    return out


def _bucket_sums(column: Any, value: Any, edges: list[datetime]) -> list[Any]:
    return [
        func.sum(case((and_(column >= lo, column < hi), value), else_=0)).cast(Integer)
        for lo, hi in pairwise(edges)
    ]


def deletions_per_month(session: Session, *, now: datetime, months: int = 12) -> list[Any]:
    """[(month start, records destroyed)] for the last `months` months, this one included."""
    edges = month_starts(now, back=months - 1, ahead=1)
    acted = col(PurgeBatch.acted_at)
    sums = _bucket_sums(acted, col(PurgeBatch.deleted_count), edges)
    row = session.execute(select(*sums).where(acted >= edges[0])).one()
    return [(edges[i], int(v or 0)) for i, v in enumerate(row)]


def due_per_month(session: Session, *, now: datetime, months: int = 12) -> list[Any]:
    """[(month start, records falling due)] for this month and the next; overdue ones excluded."""
    edges = month_starts(now, ahead=months)
    edges[0] = now
    due = col(PersonalRecord.due_at)
    sums = _bucket_sums(due, 1, edges)
    row = session.execute(
        select(*sums).where(col(PersonalRecord.status).in_(ELIGIBLE), due >= now)
    ).one()
    starts = month_starts(now, ahead=months - 1)
    return [(starts[i], int(v or 0)) for i, v in enumerate(row)]


def request_steps(session: Session, request_id: uuid.UUID) -> list[AuditEntry]:
    """The audit entries of one request, in log order (actions and actors: no personal data)."""
    return list(
        session.exec(
            select(AuditEntry)  # type: ignore[call-overload]
            .where(col(AuditEntry.target) == f"dsr_request:{request_id}")
            .order_by(col(AuditEntry.idx))
        ).scalars()
    )


def due_by_rule(session: Session, *, horizon: datetime) -> list[dict[str, Any]]:
    """What a paused run would act on if approved now: the records due at or before `horizon`,
    counted per processing record, version, rule, rule version and action, in the shape of
    `retention.purge.by_rule` (outcome `due`). Holds are re-checked only when the run acts."""
    due = col(PersonalRecord.due_at)
    keys = (
        col(PersonalRecord.policy),
        col(PersonalRecord.policy_version),
        col(PersonalRecord.rule_id),
        col(PersonalRecord.rule_version),
        col(PersonalRecord.action),
    )
    rows = session.execute(
        select(*keys, func.count())
        .where(due.is_not(None), due <= horizon, col(PersonalRecord.status).in_(ELIGIBLE))
        .group_by(*keys)
    ).all()
    names = ("policy", "policy_version", "rule_id", "rule_version", "action")
    out = [
        {**dict(zip(names, row[:5], strict=True)), "outcome": "due", "count": int(row[5])}
        for row in rows
    ]
    out.sort(key=lambda d: tuple(str(d[k]) for k in names))
    return out
