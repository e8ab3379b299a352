"""API shapes of legal holds and disposition runs (API.md "Legal holds", "Retention")."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from records.types import SafeStr


class HoldScopeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    subject_id: uuid.UUID | None = None
    policy: SafeStr | None = Field(default=None, max_length=200)
    context: SafeStr | None = Field(default=None, max_length=200)
    record_id: uuid.UUID | None = None


class HoldCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scope: HoldScopeIn
    reason: SafeStr = Field(min_length=1, max_length=2000)
    case_reference: SafeStr | None = Field(default=None, max_length=200)
    # What a data subject whose data the hold keeps is told (erasure answers). Omitted: a
    # generic legal-claims / legal-obligation text (EUDPR Art. 19(3), Art. 25(8)).
    subject_reason: SafeStr | None = Field(default=None, max_length=2000)


class HoldRelease(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: SafeStr = Field(min_length=1, max_length=2000)


class HoldRead(BaseModel):
    id: uuid.UUID
    scope: dict[str, str]
    reason: str
    case_reference: str | None
    # The text a data subject is told (the default one when none was given).
    subject_reason: str
    owner: str
    placed_at: datetime
    active: bool
    released_at: datetime | None
    released_by: str | None
    release_reason: str | None


class PurgeCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dry_run: StrictBool = False


class PurgeCounts(BaseModel):
    deleted: int = 0
    anonymised: int = 0
    handed_over: int = 0
    skipped_hold: int = 0
    failed: int = 0
    review: int = 0
    skipped_stale: int = 0


class PlannedRule(BaseModel):
    """How many records one rule version would act on, and how (a dry run's plan)."""

    policy: str
    policy_version: int | None
    rule_id: str | None
    rule_version: int | None
    action: str | None
    outcome: str
    count: int


class PlannedRecords(BaseModel):
    total: int
    # Pseudonymous record ids, the first `sample_limit` in due order.
    record_ids: list[uuid.UUID]
    truncated: bool


class PurgePlan(BaseModel):
    """A dry run's planned deletions: nothing of it was done."""

    rules: list[PlannedRule]
    # deleted, anonymised, handed_over, skipped_hold, review, skipped_stale
    records: dict[str, PlannedRecords]
    sample_limit: int


class PurgeRunRead(BaseModel):
    id: uuid.UUID
    status: str
    dry_run: bool
    counts: PurgeCounts
    trigger: str
    created_at: datetime
    horizon_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    planned_deletions: int
    pause_reason: str | None
    approved_by: str | None
    approved_at: datetime | None
    certificate_sha256: str | None
    # Dry runs only: what the run would do (counts per rule version, record ids).
    planned: PurgePlan | None = None


class CertificateRead(BaseModel):
    certificate: dict[str, Any]
    body: str
    sha256: str | None
    signature: str | None
    signature_algorithm: str | None
    public_key: str | None
