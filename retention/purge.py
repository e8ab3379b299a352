"""Disposition runs (DESIGN §5.4 to 5.6): select what is due, re-check, act, audit, certify.

A run selects records whose `due_at` is at or before its horizon through the `(due_at, id)`
index, by keyset, one transaction per batch. Inside each batch's transaction it locks the rows
(PostgreSQL: `FOR UPDATE SKIP LOCKED`, so several workers can share one run), re-reads holds and
the records' current state, acts, writes one `purge_item` per record and one audit entry for the
batch. A crash rolls the batch back whole; rerunning resumes the unfinished run, and records that
already have an item in it are never selected again, so nothing is acted on twice.

The scheduled run's horizon is the next scheduled run: everything falling due before then is
acted on now, so no record outlives its maximum (storage limitation, EUDPR Art. 4(1)(e)).
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from operator import attrgetter
from typing import Any

import structlog
from sqlalchemy import and_, delete, exists, func, insert, literal, select, text, tuple_
from sqlalchemy import update as sa_update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session, col

from audit_log import service as audit
from policies.models import ProcessingRecord, ProcessingRecordVersion
from records import memory
from records import service as records
from records.db import UTCDateTime, begin_write, unit_of_work
from records.http import Actor
from records.models import DataKey, DueAction, PersonalRecord, RecordStatus, Subject
from retention import external as external_records
from retention import holds
from retention.errors import RunNotFoundError, RunNotPausedError
from retention.models import ItemOutcome, PurgeBatch, PurgeItem, PurgeRun, RunStatus

log = structlog.get_logger(__name__)

# PostgreSQL transaction advisory lock serialising run creation and certificate chaining.
RUN_LOCK_KEY = 0x4C455448_4550524E

ELIGIBLE = (RecordStatus.active.value, RecordStatus.handed_over.value)
COUNT_KEYS = ("deleted", "anonymised", "handed_over", "skipped_hold", "failed")

# (policy version, due) under the receiving record, or None when that record is not resolvable.
# A selected due record: a Core row with the columns below (ORM objects cost more than the
# delete itself on large runs); holds, hand-over and items read only these attributes.
RecordRow = Any
HandoverDue = Callable[[Session, RecordRow, str, datetime], tuple[int, records.Due] | None]


def handover_due(
    session: Session, record: RecordRow, target: str, now: datetime
) -> tuple[int, records.Due] | None:
    """The record's due date re-decided under the processing record it is handed over to."""
    from retention import due as due_dates

    try:
        version, decision = due_dates.Evaluator(session, now=now).decide(
            policy=target,
            category=record.category,
            subject_category=record.subject_category,
            outcome=record.outcome,
            source=record.source,
            context=record.context,
            collected_at=record.collected_at,
        )
    except due_dates.UnknownPolicyError:
        return None
    return version, due_dates.due_of(decision)


@dataclass(frozen=True)
class PurgeConfig:
    batch_size: int = 500
    # Records per transaction once a batch met only external records: their cost per batch is
    # a round trip to each source and a commit, so larger batches pay it less often. The source
    # still sees transactions of at most `connectors.source.CHUNK` rows; smaller than
    # `batch_size` means `batch_size`.
    external_batch_size: int = 20000
    anomaly_factor: float = 3.0
    anomaly_floor: int = 100
    # How many recent completed runs make "the recent average" of the anomaly guard.
    history_runs: int = 7
    kek_rotation_days: int = 30
    kek_backup_window_days: int = 35


@dataclass
class PurgeContext:
    """What a run needs beyond the database: the certificate signer and optional hooks."""

    config: PurgeConfig = field(default_factory=PurgeConfig)
    signer: Any | None = None  # audit_log.signing.NoteSigner (duck-typed: sign(), verifier_key())
    # Recomputes the due date of a record handed over to another processing record; None means
    # "not resolvable": the record is kept and flagged to the DPO.
    handover_due: HandoverDue | None = handover_due
    # Called after each committed batch (tests place holds mid-run; the CLI draws progress).
    on_batch: Callable[[PurgeRun, int], None] | None = None
    # Audit checkpoint after each run (audit_log's function, wired by lethe).
    checkpoint: Callable[[Engine, datetime], Any] | None = None
    keyring_epoch_created_at: Callable[[], datetime | None] | None = None
    # Called in a batch's transaction with the subjects whose data key it destroyed, so that
    # upper layers forget what they keep about them (dsr's outbox; wired by lethe).
    on_subjects_erased: Callable[[Session, list[uuid.UUID], datetime], Any] | None = None
    # Acts at the source systems for external records (connectors; wired by lethe). None: an
    # external record falls due as failed, never as done.
    external: external_records.ExternalActions | None = None


# --- reading ---------------------------------------------------------------------------------


def get_run(session: Session, run_id: uuid.UUID) -> PurgeRun:
    run = session.get(PurgeRun, run_id)
    if run is None:
        raise RunNotFoundError(f"no disposition run {run_id}")
    return run


def counts(session: Session, run_id: uuid.UUID) -> dict[str, int]:
    rows = session.execute(
        select(PurgeItem.outcome, func.count())  # type: ignore[call-overload]
        .where(PurgeItem.run_id == run_id)
        .group_by(PurgeItem.outcome)
    ).all()
    by = {str(o): int(n) for o, n in rows}
    by[ItemOutcome.deleted.value] = int(
        session.execute(
            select(func.coalesce(func.sum(col(PurgeBatch.deleted_count)), 0)).where(
                col(PurgeBatch.run_id) == run_id
            )
        ).scalar_one()
    )
    result = {k: by.get(k, 0) for k in COUNT_KEYS}
    result["review"] = by.get(ItemOutcome.review.value, 0)
    result["skipped_stale"] = by.get(ItemOutcome.skipped_stale.value, 0)
    return result


# --- creating --------------------------------------------------------------------------------


def _lock_runs(session: Session) -> None:
    begin_write(session)
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": RUN_LOCK_KEY})


def _due_filter(horizon: datetime) -> Any:
    return and_(
        col(PersonalRecord.due_at).is_not(None),
        col(PersonalRecord.due_at) <= horizon,
        col(PersonalRecord.status).in_(ELIGIBLE),
    )


def _planned_deletions(session: Session, horizon: datetime) -> int:
    return int(
        session.execute(
            select(func.count())
            .select_from(PersonalRecord)
            .where(_due_filter(horizon), col(PersonalRecord.action) == DueAction.delete.value)
        ).scalar_one()
    )


def _pause_reason(
    session: Session, *, planned: int, config: PurgeConfig, now: datetime
) -> str | None:
    previous = list(
        session.execute(
            select(PurgeRun)
            .where(
                col(PurgeRun.dry_run).is_(False),
                col(PurgeRun.status).in_([RunStatus.completed.value, RunStatus.partial.value]),
            )
            .order_by(col(PurgeRun.created_at).desc())
            .limit(config.history_runs)
        ).scalars()
    )
    if previous and _rule_changed_since(session, previous[0].created_at):
        return "rule_change"
    if planned >= config.anomaly_floor:
        deleted = [counts(session, r.id)["deleted"] for r in previous]
        average = sum(deleted) / len(deleted) if deleted else 0.0
        if planned > config.anomaly_factor * average:
            return "volume"
    return None


def _rule_changed_since(session: Session, moment: datetime) -> bool:
    """A new version of an existing processing record was loaded after `moment`.

    A first version is a new record, not a changed rule: it does not pause the next run.
    """
    changed = exists().where(
        col(ProcessingRecordVersion.loaded_at) > moment,
        col(ProcessingRecordVersion.version) > 1,
    )
    return bool(session.execute(select(changed)).scalar_one())


def _current_versions(session: Session, references: set[str]) -> dict[str, int]:
    rows = session.execute(
        select(col(ProcessingRecord.reference), col(ProcessingRecord.current_version)).where(
            col(ProcessingRecord.reference).in_(references)
        )
    ).all()
    return {str(r): int(v) for r, v in rows}


def create_run(
    session: Session,
    *,
    dry_run: bool,
    trigger: str,
    actor: Actor,
    now: datetime,
    horizon: datetime | None = None,
    config: PurgeConfig | None = None,
) -> PurgeRun:
    """A new run: `planned` (dry), `paused` (anomaly guard) or `running`; nothing acted on yet."""
    config = config or PurgeConfig()
    _lock_runs(session)
    horizon = max(horizon or now, now)
    run = PurgeRun(
        status=RunStatus.planned.value if dry_run else RunStatus.running.value,
        dry_run=dry_run,
        trigger=trigger,
        actor=actor.ref,
        created_at=now,
        horizon_at=horizon,
    )
    # Counted for a dry run too: it answers the same question ("how many are due to delete?").
    run.planned_deletions = _planned_deletions(session, horizon)
    if not dry_run:
        reason = _pause_reason(session, planned=run.planned_deletions, config=config, now=now)
        if reason is not None:
            run.status = RunStatus.paused.value
            run.pause_reason = reason
    session.add(run)
    session.flush()
    audit.append(
        session,
        action="retention.run.paused" if run.status == "paused" else "retention.run.created",
        actor=actor.ref,
        now=now,
        target=f"purge_run:{run.id}",
        details={
            "dry_run": dry_run,
            "trigger": trigger,
            "horizon_at": audit.format_time(horizon),
            "planned_deletions": run.planned_deletions,
            "pause_reason": run.pause_reason,
        },
    )
    log.info(
        "retention.run.created",
        run_id=str(run.id),
        status=run.status,
        dry_run=dry_run,
        planned_deletions=run.planned_deletions,
    )
    return run


def approve_run(session: Session, *, run_id: uuid.UUID, actor: Actor, now: datetime) -> PurgeRun:
    _lock_runs(session)
    run = get_run(session, run_id)
    if run.status != RunStatus.paused.value:
        raise RunNotPausedError(f"disposition run {run_id} is {run.status}, not paused")
    run.status = RunStatus.running.value
    run.approved_by = actor.ref
    run.approved_at = now
    # What fell due while the run waited is acted on too.
    run.horizon_at = max(run.horizon_at, now)
    session.add(run)
    session.flush()
    audit.append(
        session,
        action="retention.run.approved",
        actor=actor.ref,
        now=now,
        target=f"purge_run:{run.id}",
        details={"pause_reason": run.pause_reason},
    )
    return run


def unfinished_run(session: Session) -> PurgeRun | None:
    return session.execute(
        select(PurgeRun)
        .where(col(PurgeRun.status) == RunStatus.running.value, col(PurgeRun.dry_run).is_(False))
        .order_by(col(PurgeRun.created_at))
        .limit(1)
    ).scalar_one_or_none()


def paused_run(session: Session) -> PurgeRun | None:
    return session.execute(
        select(PurgeRun)
        .where(col(PurgeRun.status) == RunStatus.paused.value)
        .order_by(col(PurgeRun.created_at))
        .limit(1)
    ).scalar_one_or_none()


# --- one batch -------------------------------------------------------------------------------


Cursor = tuple[datetime, uuid.UUID] | None


@dataclass
class BatchResult:
    selected: int
    cursor: Cursor
    outcomes: Counter[str]
    # Every record the batch acted on lives at a source (the next batch may be larger).
    external_only: bool = False


_COLUMNS = (
    "id",
    "subject_id",
    "policy",
    "policy_version",
    "context",
    "due_at",
    "rule_id",
    "rule_version",
    "action",
    "handover_to",
    "restricted_at",
    "restriction_ground",
    # connectors: where an external record's data lives (retention/external.py acts there)
    "external_connector",
    "external_table",
    "external_key",
)
# What re-decides a handed-over record's due date, read for those records only (most batches
# hand nothing over, and reading a column for every due record costs a large run seconds).
_HANDOVER_COLUMNS = ("category", "subject_category", "outcome", "source", "collected_at")


@dataclass(frozen=True)
class _HandedOver:
    """A due row with the fields `handover_due` reads."""

    row: RecordRow
    fields: Any

    def __getattr__(self, name: str) -> Any:
        source = self.fields if name in _HANDOVER_COLUMNS else self.row
        return getattr(source, name)


def _with_handover_fields(session: Session, rows: Sequence[RecordRow]) -> list[RecordRow]:
    table = PersonalRecord.__table__  # type: ignore[attr-defined]
    found = {
        r.id: r
        for r in session.execute(
            select(table.c.id, *(table.c[n] for n in _HANDOVER_COLUMNS)).where(
                records.one_of(session, table.c.id, [r.id for r in rows])
            )
        ).all()
    }
    return [_HandedOver(r, found[r.id]) for r in rows]


def _select_batch(
    session: Session, run: PurgeRun, cursor: Cursor, limit: int, *, lock: bool
) -> tuple[list[RecordRow], Cursor, int]:
    """The next due rows after `cursor` not yet acted on in this run.

    Returns (rows to act on, the new cursor, how many rows the keyset step covered). Destroyed
    records are gone; rows that already have an item in this run (kept by a hold on an earlier
    sweep, or dealt with by another worker that has committed) are filtered out here.
    """
    table = PersonalRecord.__table__  # type: ignore[attr-defined]
    postgres = session.get_bind().dialect.name == "postgresql"
    stmt = select(*(table.c[name] for name in _COLUMNS)).where(
        table.c.due_at.is_not(None),
        table.c.due_at <= run.horizon_at,
        table.c.status.in_(ELIGIBLE),
    )
    if cursor is not None:
        # Bound with the columns' own types: a bare datetime/UUID would be compared in
        # another representation on SQLite and the keyset would not move.
        after = tuple_(literal(cursor[0], table.c.due_at.type), literal(cursor[1], table.c.id.type))
        stmt = stmt.where(tuple_(table.c.due_at, table.c.id) > after)
    stmt = stmt.order_by(table.c.due_at, table.c.id).limit(limit)
    if lock and postgres:
        stmt = stmt.with_for_update(skip_locked=True, of=table)
    rows = list(session.execute(stmt).all())
    if not rows:
        return [], cursor, 0
    last = rows[-1]
    new_cursor: Cursor = (last.due_at, last.id)
    done: set[uuid.UUID] = set()
    # Most runs keep nothing and hand nothing over: one index probe spares the id look-up.
    if session.execute(select(exists().where(col(PurgeItem.run_id) == run.id))).scalar_one():
        done = set(
            session.execute(
                select(col(PurgeItem.record_id)).where(
                    col(PurgeItem.run_id) == run.id,
                    records.one_of(session, col(PurgeItem.record_id), [r.id for r in rows]),
                )
            ).scalars()
        )
    if done:
        rows = [r for r in rows if r.id not in done]
    return rows, new_cursor, len(rows) + len(done)


def _has_unprocessed(session: Session, run: PurgeRun, batch: int) -> bool:
    cursor: Cursor = None
    while True:
        rows, cursor, covered = _select_batch(session, run, cursor, batch, lock=False)
        if rows:
            return True
        if covered == 0:
            return False


# Per-row reads of a batch, done by C-level getters (a batch has tens of thousands of rows).
_id_of = attrgetter("id")
_subject_of = attrgetter("subject_id")
_connector_of = attrgetter("external_connector")
_policy_of = attrgetter("policy")
_rule_of = attrgetter("policy", "policy_version", "rule_id", "rule_version", "action")
_decision_of = attrgetter("policy", "policy_version", "action")

_OUTCOME_OF_ACTION: dict[str | None, ItemOutcome] = {
    DueAction.delete.value: ItemOutcome.deleted,
    DueAction.anonymise.value: ItemOutcome.anonymised,
    DueAction.handover.value: ItemOutcome.handed_over,
}


def _outcome(key: tuple[Any, ...], versions: dict[str, int]) -> tuple[ItemOutcome, str | None]:
    """(outcome, note) of a record not kept by a hold, from (policy, policy_version, action)."""
    policy, version, action = key
    current = versions.get(policy)
    if version is not None and current is not None and version < current:
        # Decided under an older version of the rules and not yet recomputed (DESIGN §5.3):
        # acting on a stale due date could delete what the new rules keep.
        return ItemOutcome.skipped_stale, f"policy_version:{version}<{current}"
    return _OUTCOME_OF_ACTION.get(action, ItemOutcome.review), None


def process_batch(
    session: Session,
    *,
    run: PurgeRun,
    cursor: Cursor,
    now: datetime,
    ctx: PurgeContext,
    limit: int | None = None,
) -> BatchResult:
    """Select, re-check and act on one batch (`limit` records, by default the configured batch
    size) in the caller's transaction."""
    begin_write(session)
    holds.lock_for_disposition(session)
    rows, new_cursor, covered = _select_batch(
        session, run, cursor, limit or ctx.config.batch_size, lock=not run.dry_run
    )
    if not rows:
        return BatchResult(selected=covered, cursor=new_cursor, outcomes=Counter())
    external_only = None not in map(_connector_of, rows)
    kept = holds.keeping(session, rows)
    versions = _current_versions(session, set(map(_policy_of, rows)))
    plan: dict[ItemOutcome, list[RecordRow]] = {}
    notes: dict[uuid.UUID, str] = {}
    # The outcome follows from (processing record, its version, action) but for holds: decide
    # each of the batch's few combinations once, not each of its thousands of rows.
    decided: dict[tuple[Any, ...], tuple[ItemOutcome, str | None]] = {}
    for record, key in zip(rows, map(_decision_of, rows), strict=True):
        if kept and record.id in kept:
            notes[record.id] = ",".join(kept[record.id])[:400]
            plan.setdefault(ItemOutcome.skipped_hold, []).append(record)
            continue
        found = decided.get(key)
        if found is None:
            found = decided[key] = _outcome(key, versions)
        outcome, note = found
        if note is not None:
            notes[record.id] = note
        plan.setdefault(outcome, []).append(record)

    if not run.dry_run:
        _act(session, plan, notes=notes, now=now, ctx=ctx)

    keys_destroyed: list[uuid.UUID] = []
    if not run.dry_run:
        keys_destroyed = _destroy_emptied_keys(
            session, set(map(_subject_of, plan.get(ItemOutcome.deleted, []))), now=now
        )
        if keys_destroyed and ctx.on_subjects_erased is not None:
            ctx.on_subjects_erased(session, keys_destroyed, now)
    destroyed = plan.get(ItemOutcome.deleted, [])
    # The ids as text once: the batch row and the audit entry both name them.
    destroyed_text = list(map(str, map(_id_of, destroyed)))
    if destroyed:
        rules: Counter[tuple[Any, ...]] = Counter(map(_rule_of, destroyed))
        session.execute(
            insert(PurgeBatch.__table__),  # type: ignore[attr-defined]
            {
                "run_id": run.id,
                "acted_at": now,
                "deleted_count": len(destroyed),
                "deleted_ids": ",".join(destroyed_text),
                "keys_destroyed": ",".join(str(k) for k in keys_destroyed),
                "by_rule": json.dumps([[*key, n] for key, n in sorted(rules.items(), key=str)]),
            },
        )
    items = [
        {
            "run_id": run.id,
            "record_id": r.id,
            "subject_id": r.subject_id,
            "policy": r.policy,
            "policy_version": r.policy_version,
            "rule_id": r.rule_id,
            "rule_version": r.rule_version,
            "action": r.action,
            "outcome": outcome.value,
            "note": notes.get(r.id),
            "due_at": r.due_at,
            "acted_at": now,
        }
        for outcome, rs in plan.items()
        if outcome is not ItemOutcome.deleted
        for r in rs
    ]
    if items:
        session.execute(insert(PurgeItem.__table__), items)  # type: ignore[attr-defined]
    outcomes = Counter({o.value: len(rs) for o, rs in plan.items()})
    if not run.dry_run:
        details: dict[str, Any] = {
            "run_id": str(run.id),
            **{
                o.value: destroyed_text if o is ItemOutcome.deleted else [str(r.id) for r in rs]
                for o, rs in plan.items()
                if rs
            },
            "subject_keys_destroyed": [str(s) for s in keys_destroyed],
        }
        audit.append(
            session,
            action="retention.batch.purged",
            actor=run.actor,
            now=now,
            target=f"purge_run:{run.id}",
            details=details,
        )
    # Write the audit entry now: the batch's objects are dropped next, to keep memory flat.
    session.flush()
    session.expunge_all()
    return BatchResult(
        selected=covered, cursor=new_cursor, outcomes=outcomes, external_only=external_only
    )


def _act(
    session: Session,
    plan: dict[ItemOutcome, list[RecordRow]],
    *,
    notes: dict[uuid.UUID, str],
    now: datetime,
    ctx: PurgeContext,
) -> None:
    table = PersonalRecord.__table__  # type: ignore[attr-defined]
    erasure = external_records.PurgeErasure(
        plan, deleted=ItemOutcome.deleted, anonymised=ItemOutcome.anonymised, actions=ctx.external
    )
    with erasure:
        # While the sources erase the external rows, delete the index rows the batch expects to
        # delete, in a savepoint: if a source did not erase a row, the savepoint is rolled back
        # and only what the sources confirmed is deleted (below).
        expected = erasure.expected_deletions(plan.get(ItemOutcome.deleted, []))
        early: Any = None
        if expected and erasure.targets:
            early = session.begin_nested()
            try:
                session.execute(delete(table).where(records.one_of(session, table.c.id, expected)))
            except DBAPIError:
                early.rollback()
                early = None
        moved = erasure.settle(plan, failed=ItemOutcome.failed, notes=notes)
    if early is not None:
        if moved:
            early.rollback()
        else:
            early.commit()
    tombstones = erasure.keep_tombstones(session, plan, now=now)
    doomed = (
        []
        if early is not None and not moved
        else [r.id for r in plan.get(ItemOutcome.deleted, []) if r.id not in tombstones]
    )
    if doomed:
        try:
            with session.begin_nested():
                session.execute(delete(table).where(records.one_of(session, table.c.id, doomed)))
        except DBAPIError:
            # One record something still refers to must not stop the others: retry one by one
            # and report the ones that fail (the next run tries them again).
            _delete_one_by_one(session, plan, notes=notes)
    anonymised = [r.id for r in plan.get(ItemOutcome.anonymised, [])]
    if anonymised:
        # Anonymising drops the encrypted payload: what stays (category, context, outcome) is
        # no longer linked to readable personal data.
        session.execute(
            sa_update(table)
            .where(records.one_of(session, table.c.id, anonymised))
            .values(
                payload=None,
                status=RecordStatus.anonymised.value,
                due_at=None,
                updated_at=now,
            )
        )
    review = [r.id for r in plan.get(ItemOutcome.review, [])]
    if review:
        # A DPO decides: the record leaves the due queue and shows in the retention report.
        session.execute(
            sa_update(table)
            .where(records.one_of(session, table.c.id, review))
            .values(status=RecordStatus.review.value, due_at=None, updated_at=now)
        )
    handed = plan.get(ItemOutcome.handed_over, [])
    for record in _with_handover_fields(session, handed) if handed else []:
        target = record.handover_to
        decided = None
        if target and ctx.handover_due is not None:
            decided = ctx.handover_due(session, record, target, now)
        if decided is None:
            # DESIGN §3: data handed over to a record not in the registry is kept and flagged
            # to the DPO (retention report), never silently deleted.
            notes[record.id] = f"to:{target};unresolved"
            values: dict[str, Any] = {
                "policy_version": None,
                "due_at": None,
                "rule_id": None,
                "rule_version": None,
                "action": None,
                "handover_to": None,
            }
        else:
            version, due = decided
            notes[record.id] = f"to:{target};v{version}"
            values = {
                "policy_version": version,
                "due_at": due.due_at,
                "rule_id": due.rule_id,
                "rule_version": due.rule_version,
                "action": due.action,
                "handover_to": due.handover_to,
            }
        session.execute(
            sa_update(table)
            .where(table.c.id == record.id)
            .values(
                policy=target or record.policy,
                status=RecordStatus.handed_over.value,
                updated_at=now,
                **values,
            )
        )


def _delete_one_by_one(
    session: Session,
    plan: dict[ItemOutcome, list[RecordRow]],
    *,
    notes: dict[uuid.UUID, str],
) -> None:
    table = PersonalRecord.__table__  # type: ignore[attr-defined]
    deleted: list[RecordRow] = []
    for record in plan.get(ItemOutcome.deleted, []):
        try:
            with session.begin_nested():
                session.execute(delete(table).where(table.c.id == record.id))
        except DBAPIError as exc:
            notes[record.id] = f"error:{type(exc.orig).__name__}"[:400]
            plan.setdefault(ItemOutcome.failed, []).append(record)
        else:
            deleted.append(record)
    plan[ItemOutcome.deleted] = deleted


def _destroy_emptied_keys(
    session: Session, subject_ids: set[uuid.UUID], *, now: datetime
) -> list[uuid.UUID]:
    """Crypto-shred subjects of whom no personal record remains (anonymised ones aside)."""
    if not subject_ids:
        return []
    keys = DataKey.__table__  # type: ignore[attr-defined]
    table = PersonalRecord.__table__  # type: ignore[attr-defined]
    still_held = exists().where(
        table.c.subject_id == keys.c.subject_id,
        table.c.status != RecordStatus.anonymised.value,
    )
    destroyed = sorted(
        session.execute(
            select(keys.c.subject_id).where(
                records.one_of(session, keys.c.subject_id, subject_ids),
                keys.c.wrapped_key.is_not(None),
                ~still_held,
            )
        ).scalars()
    )
    if not destroyed:
        return []
    # The set-based form of `records.service.destroy_subject_key` (same columns, same meaning):
    # one statement per table instead of three per subject.
    session.execute(
        sa_update(keys)
        .where(
            records.one_of(session, keys.c.subject_id, destroyed), keys.c.wrapped_key.is_not(None)
        )
        .values(
            wrapped_key=None,
            kek_epoch=None,
            destroyed_at=func.coalesce(keys.c.destroyed_at, literal(now, UTCDateTime())),
        )
    )
    subjects = Subject.__table__  # type: ignore[attr-defined]
    session.execute(
        sa_update(subjects)
        .where(records.one_of(session, subjects.c.id, destroyed))
        .values(
            identity=None,
            email_index=None,
            external_id_index=None,
            email_key=None,
            external_id_key=None,
            erased_at=func.coalesce(subjects.c.erased_at, literal(now, UTCDateTime())),
            updated_at=now,
        )
    )
    log.info("retention.keys.destroyed", subjects=len(destroyed))
    return destroyed


# --- whole runs ------------------------------------------------------------------------------


def _finalise(session: Session, run_id: uuid.UUID, *, now: datetime, ctx: PurgeContext) -> bool:
    """Close the run and sign its certificate once; False when work remains or it is closed."""
    from retention import certificate

    _lock_runs(session)
    stmt = select(PurgeRun).where(col(PurgeRun.id) == run_id)
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    run = session.execute(stmt).scalar_one()
    if run.status not in (RunStatus.running.value, RunStatus.planned.value):
        return True
    if run.status == RunStatus.running.value and _has_unprocessed(
        session, run, ctx.config.batch_size
    ):
        return False
    tally = counts(session, run.id)
    if run.status == RunStatus.running.value:
        run.status = RunStatus.partial.value if tally["failed"] else RunStatus.completed.value
    run.finished_at = now
    certificate.issue(session, run=run, now=now, ctx=ctx)
    session.add(run)
    session.flush()
    audit.append(
        session,
        action="retention.run.completed",
        actor=run.actor,
        now=now,
        target=f"purge_run:{run.id}",
        details={
            "status": run.status,
            "dry_run": run.dry_run,
            "counts": tally,
            "certificate_sha256": run.certificate_sha256,
        },
    )
    log.info("retention.run.completed", run_id=str(run.id), status=run.status, **tally)
    return True


def execute(
    engine: Engine,
    run_id: uuid.UUID,
    *,
    clock: Callable[[], datetime],
    ctx: PurgeContext,
) -> PurgeRun:
    """Work a running run to its end, one transaction per batch; safe to call from many workers."""
    cursor: Cursor = None
    config = ctx.config
    limit = config.batch_size
    with unit_of_work(engine) as session:
        fresh = get_run(session, run_id)
        if fresh.status == RunStatus.running.value and fresh.started_at is None:
            fresh.started_at = clock()
            session.add(fresh)
    while True:
        while True:
            with memory.collector_paused(), unit_of_work(engine) as session:
                run = get_run(session, run_id)
                if run.status != RunStatus.running.value:
                    break
                result = process_batch(
                    session, run=run, cursor=cursor, now=clock(), ctx=ctx, limit=limit
                )
            if result.selected == 0:
                break
            cursor = result.cursor
            limit = (
                max(config.batch_size, config.external_batch_size)
                if result.external_only
                else config.batch_size
            )
            if ctx.on_batch is not None:
                ctx.on_batch(run, result.selected)
        with unit_of_work(engine) as session:
            done = _finalise(session, run_id, now=clock(), ctx=ctx)
        if done:
            break
        # Rows a crashed or parallel worker left behind: sweep again from the start.
        cursor = None
    with unit_of_work(engine, write=False) as session:
        run = get_run(session, run_id)
    if ctx.checkpoint is not None:
        try:
            ctx.checkpoint(engine, clock())
        except Exception as exc:  # the run is done and certified; a later checkpoint covers it
            log.warning("retention.checkpoint_failed", error_type=type(exc).__name__)
    return run


def plan_dry_run(session: Session, *, run: PurgeRun, now: datetime, ctx: PurgeContext) -> PurgeRun:
    """Compute a dry run's plan in the caller's transaction and certify it."""
    cursor: Cursor = None
    while True:
        with memory.collector_paused():
            result = process_batch(session, run=run, cursor=cursor, now=now, ctx=ctx)
        if result.selected == 0:
            break
        cursor = result.cursor
    _finalise(session, run.id, now=now, ctx=ctx)
    return get_run(session, run.id)


def purge(
    engine: Engine,
    *,
    dry_run: bool,
    trigger: str,
    actor: Actor,
    clock: Callable[[], datetime],
    ctx: PurgeContext,
    horizon: datetime | None = None,
) -> PurgeRun:
    """`lethe purge` and the scheduled job: resume the unfinished run or start a new one.

    Several workers calling this at once join the same run instead of starting their own; a
    rerun after a crash resumes the interrupted run. Returns the run (it may be `paused`).
    """
    with unit_of_work(engine) as session:
        _lock_runs(session)
        running = None if dry_run else unfinished_run(session)
        waiting = None if dry_run else paused_run(session)
        if running is not None:
            # Interrupted by a crash, or being worked by a parallel worker: join it, and let it
            # cover this invocation's horizon too, so nothing due tonight waits for tomorrow.
            run = _extend(session, running, horizon=horizon, actor=actor, now=clock())
        elif waiting is not None:
            # One run waits for the DPO; stacking another paused run each night helps nobody.
            log.warning("retention.run.still_paused", run_id=str(waiting.id))
            run = waiting
        else:
            run = create_run(
                session,
                dry_run=dry_run,
                trigger=trigger,
                actor=actor,
                now=clock(),
                horizon=horizon,
                config=ctx.config,
            )
            if dry_run:
                run = plan_dry_run(session, run=run, now=clock(), ctx=ctx)
    if run.status == RunStatus.running.value:
        run = execute(engine, run.id, clock=clock, ctx=ctx)
    return run


def _extend(
    session: Session, run: PurgeRun, *, horizon: datetime | None, actor: Actor, now: datetime
) -> PurgeRun:
    wanted = max(horizon or now, now)
    if wanted <= run.horizon_at:
        return run
    run.horizon_at = wanted
    session.add(run)
    session.flush()
    audit.append(
        session,
        action="retention.run.extended",
        actor=actor.ref,
        now=now,
        target=f"purge_run:{run.id}",
        details={"horizon_at": audit.format_time(wanted)},
    )
    return run


def items(
    session: Session, run_id: uuid.UUID, outcomes: Sequence[str] | None = None
) -> list[PurgeItem]:
    stmt = select(PurgeItem).where(col(PurgeItem.run_id) == run_id)
    if outcomes:
        stmt = stmt.where(col(PurgeItem.outcome).in_(outcomes))
    return list(session.execute(stmt.order_by(col(PurgeItem.id))).scalars())


def by_rule(session: Session, run_id: uuid.UUID) -> list[dict[str, Any]]:
    """Counts per processing record, version, rule, rule version, action and outcome."""
    tally: Counter[tuple[Any, ...]] = Counter()
    rows = session.execute(
        select(
            col(PurgeItem.policy),
            col(PurgeItem.policy_version),
            col(PurgeItem.rule_id),
            col(PurgeItem.rule_version),
            col(PurgeItem.action),
            col(PurgeItem.outcome),
            func.count(),
        )
        .where(col(PurgeItem.run_id) == run_id)
        .group_by(
            col(PurgeItem.policy),
            col(PurgeItem.policy_version),
            col(PurgeItem.rule_id),
            col(PurgeItem.rule_version),
            col(PurgeItem.action),
            col(PurgeItem.outcome),
        )
    ).all()
    for p, pv, rid, rv, a, o, n in rows:
        tally[(p, pv, rid, rv, a, o)] += int(n)
    for text_value in session.execute(
        select(col(PurgeBatch.by_rule)).where(col(PurgeBatch.run_id) == run_id)
    ).scalars():
        for p, pv, rid, rv, a, n in json.loads(text_value):
            tally[(p, pv, rid, rv, a, ItemOutcome.deleted.value)] += int(n)
    keys = ("policy", "policy_version", "rule_id", "rule_version", "action", "outcome")
    out = [{**dict(zip(keys, key, strict=True)), "count": n} for key, n in tally.items()]
    out.sort(key=lambda d: tuple(str(d[k]) for k in keys))
    return out


PLAN_SAMPLE = 100
PLAN_OUTCOMES = (
    ItemOutcome.deleted,
    ItemOutcome.anonymised,
    ItemOutcome.handed_over,
    ItemOutcome.skipped_hold,
    ItemOutcome.review,
    ItemOutcome.skipped_stale,
)


def plan(
    session: Session,
    run_id: uuid.UUID,
    *,
    sample: int = PLAN_SAMPLE,
    tally: dict[str, int] | None = None,
) -> dict[str, Any]:
    """What a dry run found: counts per processing record, version, rule, rule version, action
    and outcome, and per outcome the pseudonymous record ids (the first `sample` in due order)
    with their total. Ids only: nothing here identifies a person without the database.

    >>> plan(session, run.id)["records"]["deleted"]  # doctest: +SKIP
    {'total': 3, 'record_ids': ['0b…', '4f…', 'c2…'], 'truncated': False}

    `tally`: the run's `counts`, when the caller has them already (two aggregates over the
    run's items: a large dry run need not pay them twice).
    """
    tally = counts(session, run_id) if tally is None else tally
    records: dict[str, dict[str, Any]] = {}
    deleted: list[str] = []
    # Batches in the order they were planned (due order); stop reading once the sample is full.
    for ids in session.execute(
        select(col(PurgeBatch.deleted_ids))
        .where(col(PurgeBatch.run_id) == run_id)
        .order_by(col(PurgeBatch.id))
    ).scalars():
        deleted.extend(i for i in ids.split(",") if i)
        if len(deleted) >= sample:
            break
    for outcome in PLAN_OUTCOMES:
        if outcome is ItemOutcome.deleted:
            ids_out = deleted[:sample]
        else:
            ids_out = [
                str(i)
                for i in session.execute(
                    select(col(PurgeItem.record_id))
                    .where(col(PurgeItem.run_id) == run_id, col(PurgeItem.outcome) == outcome.value)
                    .order_by(col(PurgeItem.due_at), col(PurgeItem.record_id))
                    .limit(sample)
                ).scalars()
            ]
        total = tally.get(outcome.value, 0)
        records[outcome.value] = {
            "total": total,
            "record_ids": ids_out,
            "truncated": total > len(ids_out),
        }
    return {"rules": by_rule(session, run_id), "records": records, "sample_limit": sample}


def destroyed_ids(session: Session, run_id: uuid.UUID) -> tuple[list[str], list[str]]:
    """(ids of the records the run destroyed, ids of the subjects whose key it destroyed)."""
    records_out: list[str] = []
    subjects_out: list[str] = []
    for ids, keys in session.execute(
        select(col(PurgeBatch.deleted_ids), col(PurgeBatch.keys_destroyed))
        .where(col(PurgeBatch.run_id) == run_id)
        .order_by(col(PurgeBatch.id))
    ).all():
        records_out.extend(i for i in ids.split(",") if i)
        subjects_out.extend(k for k in keys.split(",") if k)
    return sorted(records_out), sorted(subjects_out)


def recent_deletion_average(session: Session, *, runs: int) -> float:
    previous = list(
        session.execute(
            select(col(PurgeRun.id))
            .where(
                col(PurgeRun.dry_run).is_(False),
                col(PurgeRun.status).in_([RunStatus.completed.value, RunStatus.partial.value]),
            )
            .order_by(col(PurgeRun.created_at).desc())
            .limit(runs)
        ).scalars()
    )
    if not previous:
        return 0.0
    return sum(counts(session, r)["deleted"] for r in previous) / len(previous)
