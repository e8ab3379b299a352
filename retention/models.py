"""Tables of the disposition side: legal holds, disposition runs and their items, job leases.

A `purge_item` row (a record kept, handed over, anonymised, sent to review or failed) and a
`purge_batch` row (the records a batch destroyed) are written in the same transaction as the
actions and the batch's audit entry, so after a crash "has an item" means "was dealt with in
this run" and a destroyed record is simply gone (DESIGN §5.4). No foreign keys to
`personal_record`: the records they name may be gone.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import Boolean, Index, Integer, String, Text, UniqueConstraint, Uuid
from sqlmodel import Column, Field, SQLModel

# Registers the tables below retention for Alembic and the models-versus-migrations test.
import audit_log.models  # noqa: F401
import policies.models  # noqa: F401
import records.models  # noqa: F401
from records.db import UTCDateTime


class HoldScope(enum.StrEnum):
    subject = "subject"
    policy = "policy"
    context = "context"
    record = "record"


class RunStatus(enum.StrEnum):
    planned = "planned"  # dry run: the plan is all there is
    paused = "paused"  # anomaly guard: waits for a DPO's approval
    running = "running"
    completed = "completed"
    partial = "partial"  # finished, but some records failed (they are retried by the next run)
    failed = "failed"  # finalised with failures or interrupted and closed by a later run


class ItemOutcome(enum.StrEnum):
    deleted = "deleted"
    anonymised = "anonymised"
    handed_over = "handed_over"
    review = "review"
    skipped_hold = "skipped_hold"
    skipped_stale = "skipped_stale"
    failed = "failed"
    planned = "planned"


class LegalHold(SQLModel, table=True):
    __tablename__ = "legal_hold"
    __table_args__ = (Index("ix_legal_hold_scope", "scope_kind", "scope_value"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, sa_column=Column(Uuid(), primary_key=True))
    scope_kind: str = Field(sa_column=Column(String(20), nullable=False))
    scope_value: str = Field(sa_column=Column(String(200), nullable=False))
    # Free text from the DPO; shown to staff, never written to logs or the audit trail.
    reason: str = Field(sa_column=Column(Text(), nullable=False))
    case_reference: str | None = Field(default=None, sa_column=Column(String(200), nullable=True))
    # What the data subject is told when the hold keeps their data (erasure answers): never the
    # internal `reason` or the case reference. NULL: `retention.holds.DEFAULT_SUBJECT_REASON`.
    subject_reason: str | None = Field(default=None, sa_column=Column(Text(), nullable=True))
    owner: str = Field(sa_column=Column(String(100), nullable=False))
    placed_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    released_at: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime(), nullable=True)
    )
    released_by: str | None = Field(default=None, sa_column=Column(String(100), nullable=True))
    release_reason: str | None = Field(default=None, sa_column=Column(Text(), nullable=True))


class PurgeRun(SQLModel, table=True):
    __tablename__ = "purge_run"
    __table_args__ = (
        Index("ix_purge_run_status", "status"),
        UniqueConstraint("certificate_seq", name="uq_purge_run_certificate_seq"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, sa_column=Column(Uuid(), primary_key=True))
    status: str = Field(sa_column=Column(String(20), nullable=False))
    dry_run: bool = Field(sa_column=Column(Boolean(), nullable=False))
    trigger: str = Field(sa_column=Column(String(20), nullable=False))
    actor: str = Field(sa_column=Column(String(100), nullable=False))
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    # Everything due at or before this instant is acted on (the next scheduled run, DESIGN §5).
    horizon_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    started_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))
    finished_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))
    planned_deletions: int = Field(default=0, sa_column=Column(Integer(), nullable=False))
    pause_reason: str | None = Field(default=None, sa_column=Column(String(200), nullable=True))
    approved_by: str | None = Field(default=None, sa_column=Column(String(100), nullable=True))
    approved_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))
    # The signed certificate of disposition (canonical JSON), its chain position and signature.
    certificate_seq: int | None = Field(default=None, sa_column=Column(Integer(), nullable=True))
    certificate: str | None = Field(default=None, sa_column=Column(Text(), nullable=True))
    certificate_sha256: str | None = Field(
        default=None, sa_column=Column(String(64), nullable=True)
    )
    signature: str | None = Field(default=None, sa_column=Column(Text(), nullable=True))


class PurgeItem(SQLModel, table=True):
    __tablename__ = "purge_item"
    __table_args__ = (UniqueConstraint("run_id", "record_id", name="uq_purge_item_run_record"),)

    id: int | None = Field(
        default=None, sa_column=Column(Integer(), primary_key=True, autoincrement=True)
    )
    run_id: uuid.UUID = Field(sa_column=Column(Uuid(), nullable=False))
    record_id: uuid.UUID = Field(sa_column=Column(Uuid(), nullable=False))
    subject_id: uuid.UUID | None = Field(default=None, sa_column=Column(Uuid(), nullable=True))
    policy: str = Field(sa_column=Column(String(100), nullable=False))
    policy_version: int | None = Field(default=None, sa_column=Column(Integer(), nullable=True))
    rule_id: str | None = Field(default=None, sa_column=Column(String(100), nullable=True))
    rule_version: int | None = Field(default=None, sa_column=Column(Integer(), nullable=True))
    action: str | None = Field(default=None, sa_column=Column(String(20), nullable=True))
    outcome: str = Field(sa_column=Column(String(20), nullable=False))
    # Hold ids (comma-separated) or a short error code; never personal data.
    note: str | None = Field(default=None, sa_column=Column(String(400), nullable=True))
    due_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))
    acted_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class PurgeBatch(SQLModel, table=True):
    """One committed batch of a run: what it destroyed, compactly.

    Destroyed records need no per-record row (their absence is what excludes them from later
    batches); a run of half a million deletions writes a thousand of these instead.
    """

    __tablename__ = "purge_batch"
    __table_args__ = (Index("ix_purge_batch_run_id", "run_id"),)

    id: int | None = Field(
        default=None, sa_column=Column(Integer(), primary_key=True, autoincrement=True)
    )
    run_id: uuid.UUID = Field(sa_column=Column(Uuid(), nullable=False))
    acted_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    deleted_count: int = Field(sa_column=Column(Integer(), nullable=False))
    # Comma-separated record ids, and the subjects whose data key the batch destroyed.
    deleted_ids: str = Field(sa_column=Column(Text(), nullable=False))
    keys_destroyed: str = Field(sa_column=Column(Text(), nullable=False))
    # JSON [[policy, policy_version, rule_id, rule_version, action, count], …]
    by_rule: str = Field(sa_column=Column(Text(), nullable=False))


class JobLease(SQLModel, table=True):
    """Who runs a scheduled job now, and when it last started (one process per job at a time)."""

    __tablename__ = "job_lease"

    job_id: str = Field(sa_column=Column(String(100), primary_key=True))
    holder: str | None = Field(default=None, sa_column=Column(String(200), nullable=True))
    expires_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))
    last_started_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))
    last_finished_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))
