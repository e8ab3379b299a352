"""API shapes of subjects, records, events and imports (API.md "Subjects, records, events").

Inputs use the strict types of `records.types`: timestamps are RFC 3339 with an offset (a naive
one, a Unix number or a year 9999 is a 422, never silently read as UTC), text refuses NUL and lone
surrogates, free-form objects are checked recursively.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from records.types import EmailAddress, Instant, JsonObject, SafeStr


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class SubjectCreate(_In):
    email: EmailAddress
    name: SafeStr | None = Field(default=None, max_length=500)
    external_id: SafeStr | None = Field(default=None, min_length=1, max_length=200)
    attributes: JsonObject = Field(default_factory=dict)


class SubjectCreated(BaseModel):
    id: uuid.UUID


class SubjectRead(BaseModel):
    id: uuid.UUID
    email: str
    name: str | None
    external_id: str | None
    attributes: dict[str, Any]
    created_at: datetime


class RecordBody(_In):
    """The fields of a record common to the API and the import lines."""

    id: uuid.UUID | None = None
    policy: SafeStr = Field(min_length=1, max_length=100)
    category: SafeStr = Field(min_length=1, max_length=100)
    subject_category: SafeStr | None = Field(default=None, max_length=100)
    context: SafeStr | None = Field(default=None, max_length=200)
    outcome: SafeStr | None = Field(default=None, max_length=100)
    source: SafeStr | None = Field(default=None, max_length=100)
    collected_at: Instant
    payload: JsonObject


class RecordCreate(RecordBody):
    subject_id: uuid.UUID


class ImportLine(RecordBody):
    """One NDJSON/CSV import line: a record with its subject by id or inline."""

    subject_id: uuid.UUID | None = None
    subject: SubjectCreate | None = None


class RecordIngested(BaseModel):
    id: uuid.UUID
    due_at: datetime | None
    rule_id: str | None
    rule_version: int | None
    status: str
    action: str | None = None
    policy_version: int | None = None


class RecordRead(BaseModel):
    id: uuid.UUID
    subject_id: uuid.UUID
    policy: str
    policy_version: int | None
    category: str
    subject_category: str | None
    context: str | None
    outcome: str | None
    source: str | None
    collected_at: datetime
    due_at: datetime | None
    rule_id: str | None
    rule_version: int | None
    action: str | None
    handover_to: str | None
    status: str
    restricted: bool = False
    restricted_at: datetime | None
    restriction_ground: str | None
    created_at: datetime
    updated_at: datetime
    payload: dict[str, Any]


class RestrictedRecordRead(BaseModel):
    """A restricted record as a controller sees it in a listing: that it exists and why it is
    restricted, nothing of what it holds (storage only, EUDPR Art. 20; the DPO reads it whole)."""

    id: uuid.UUID
    subject_id: uuid.UUID
    policy: str
    restricted: Literal[True] = True
    restricted_at: datetime
    restriction_ground: str | None


class EventCreate(_In):
    type: SafeStr = Field(min_length=1, max_length=100)
    context: SafeStr = Field(min_length=1, max_length=200)
    occurred_at: Instant


class EventCreated(BaseModel):
    id: uuid.UUID
    affected_records: int


class ImportFailure(BaseModel):
    line: int
    error: str


class ImportResult(BaseModel):
    imported: int
    failed: list[ImportFailure]
