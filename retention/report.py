"""The DPO's retention report: per processing record and rule, what is held, due, overdue.

"Overdue" (due before now, not kept by a hold, not yet acted on) should always be zero: any
other number means the purge is not running or is failing. Counts only, no personal data.
"""

from __future__ import annotations

import csv
import html
import io
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Integer, and_, case, false, func, or_, select
from sqlmodel import Session, col

from policies import service as policies
from policies.calendar import add_duration
from records.models import PersonalRecord, RecordStatus
from retention import holds
from retention.models import HoldScope
from retention.purge import ELIGIBLE

COLUMNS = (
    "policy",
    "rule_id",
    "rule_version",
    "action",
    "records",
    "held",
    "due_7_days",
    "due_30_days",
    "due_90_days",
    "overdue",
    "kept_by_holds",
    "handed_over_unresolved",
    "in_review",
    "untriggered",
    "untriggered_past_alarm",
)


def _held_condition(session: Session) -> Any:
    """SQL condition "an active hold or a holding restriction keeps this record"."""
    active = holds.list_holds(session, active=True)
    by_kind: dict[str, list[str]] = {}
    for hold in active:
        by_kind.setdefault(hold.scope_kind, []).append(hold.scope_value)
    conditions: list[Any] = []
    if by_kind.get(HoldScope.subject.value):
        ids = [uuid.UUID(v) for v in by_kind[HoldScope.subject.value]]
        conditions.append(col(PersonalRecord.subject_id).in_(ids))
    if by_kind.get(HoldScope.record.value):
        ids = [uuid.UUID(v) for v in by_kind[HoldScope.record.value]]
        conditions.append(col(PersonalRecord.id).in_(ids))
    if by_kind.get(HoldScope.policy.value):
        conditions.append(col(PersonalRecord.policy).in_(by_kind[HoldScope.policy.value]))
    if by_kind.get(HoldScope.context.value):
        conditions.append(col(PersonalRecord.context).in_(by_kind[HoldScope.context.value]))
    restricted = session.execute(
        select(col(PersonalRecord.id), col(PersonalRecord.restriction_ground)).where(
            col(PersonalRecord.restricted_at).is_not(None)
        )
    ).all()
    keep = [rid for rid, ground in restricted if holds.restriction_holds(ground)]
    if keep:
        conditions.append(col(PersonalRecord.id).in_(keep))
    return or_(*conditions) if conditions else false()


def _count(condition: Any) -> Any:
    return func.sum(case((condition, 1), else_=0)).cast(Integer)


def build(session: Session, *, now: datetime) -> dict[str, Any]:
    held = _held_condition(session)
    due = col(PersonalRecord.due_at)
    eligible = col(PersonalRecord.status).in_(ELIGIBLE)

    def due_within(days: int) -> Any:
        return and_(eligible, due > now, due <= now + timedelta(days=days))

    stmt = (
        select(
            col(PersonalRecord.policy),
            col(PersonalRecord.rule_id),
            col(PersonalRecord.rule_version),
            col(PersonalRecord.action),
            func.count(),
            _count(held),
            _count(due_within(7)),
            _count(due_within(30)),
            _count(due_within(90)),
            _count(and_(eligible, due <= now, ~held)),
            _count(and_(eligible, due <= now, held)),
            _count(
                and_(col(PersonalRecord.status) == RecordStatus.handed_over.value, due.is_(None))
            ),
            _count(col(PersonalRecord.status) == RecordStatus.review.value),
            _count(and_(col(PersonalRecord.status) == RecordStatus.active.value, due.is_(None))),
        )
        .group_by(
            col(PersonalRecord.policy),
            col(PersonalRecord.rule_id),
            col(PersonalRecord.rule_version),
            col(PersonalRecord.action),
        )
        .order_by(col(PersonalRecord.policy), col(PersonalRecord.rule_id))
    )
    rows: list[dict[str, Any]] = []
    for values in session.execute(stmt).all():
        row = dict(zip(COLUMNS[:-1], values, strict=True))
        row = {k: (int(v or 0) if k not in COLUMNS[:4] else v) for k, v in row.items()}
        row["untriggered_past_alarm"] = 0
        rows.append(row)
    _add_alarms(session, rows, now=now)
    totals = {c: sum(int(r[c]) for r in rows) for c in COLUMNS[4:]}
    return {
        "generated_at": now.isoformat(),
        "rows": rows,
        "totals": totals,
        "dpo_flags": _dpo_flags(session),
    }


def _dpo_flags(session: Session) -> list[dict[str, str]]:
    """Gaps in the current records that the DPO must resolve (e.g. an unstated Art. 10 ground)."""
    return [
        {"policy": document.reference, **flag.model_dump()}
        for _row, document in policies.current_documents(session)
        for flag in document.dpo_flags()
    ]


def _add_alarms(session: Session, rows: Sequence[dict[str, Any]], *, now: datetime) -> None:
    """Untriggered records older than their rule's `review_if_untriggered_after` (DESIGN §3)."""
    alarms: dict[tuple[str, str], Any] = {}
    for _row, document in policies.current_documents(session):
        for rule in document.rules:
            if rule.review_if_untriggered_after is not None:
                alarms[(document.reference, rule.id)] = rule.review_if_untriggered_after
    if not alarms:
        return
    by_key = {(r["policy"], r["rule_id"], r["rule_version"], r["action"]): r for r in rows}
    untriggered = session.execute(
        select(
            col(PersonalRecord.policy),
            col(PersonalRecord.rule_id),
            col(PersonalRecord.rule_version),
            col(PersonalRecord.action),
            col(PersonalRecord.collected_at),
        ).where(
            col(PersonalRecord.status) == RecordStatus.active.value,
            col(PersonalRecord.due_at).is_(None),
            col(PersonalRecord.rule_id).is_not(None),
        )
    ).all()
    today = now.date()
    for policy, rule_id, version, action, collected in untriggered:
        duration = alarms.get((policy, rule_id))
        if duration is None:
            continue
        if add_duration(collected.date(), duration) <= today:
            target = by_key.get((policy, rule_id, version, action))
            if target is not None:
                target["untriggered_past_alarm"] += 1


def to_csv(data: dict[str, Any]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(COLUMNS), lineterminator="\n")
    writer.writeheader()
    for row in data["rows"]:
        writer.writerow(row)
    return out.getvalue()


def to_html(data: dict[str, Any]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(r[c]))}</td>" for c in COLUMNS) + "</tr>"
        for r in data["rows"]
    )
    total = "".join(
        f"<td>{html.escape(str(data['totals'].get(c, '')))}</td>" if i >= 4 else "<td></td>"
        for i, c in enumerate(COLUMNS)
    )
    overdue = data["totals"].get("overdue", 0)
    flag = (
        '<p class="ok">Nothing is overdue.</p>'
        if overdue == 0
        else f'<p class="alert">{overdue} records are overdue: check the purge.</p>'
    )
    flagged = "".join(
        f"<li>{html.escape(f['policy'])} {html.escape(f['field'])}: {html.escape(f['detail'])}</li>"
        for f in data.get("dpo_flags", [])
    )
    if flagged:
        flag += f'<h2>Flagged to the DPO</h2><ul class="alert">{flagged}</ul>'
    return (
        "<!doctype html><html lang=en><meta charset=utf-8><title>Retention report</title>"
        "<h1>Retention report</h1>"
        f"<p>Generated {html.escape(data['generated_at'])}</p>{flag}"
        f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody>"
        f"<tfoot><tr>{total}</tr></tfoot></table></html>"
    )
