"""API shapes of subjects, records, events and imports (API.md "Subjects, records, events").

Timestamps are `AwareDatetime`: a naive timestamp is a 422, never silently read as UTC.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class SubjectCreate(_In):
    email: str = Field(min_length=3, max_length=320)
    name: str | None = Field(default=None, max_length=500)
    external_id: str | None = Field(default=None, min_length=1, max_length=200)
    attributes: dict[str, Any] = Field(default_factory=dict)

    @field_validator("email")
    @classmethod
    def _email_shape(cls, value: str) -> str:
        if _EMAIL.fullmatch(value) is None:
            raise ValueError("not an e-mail address")
        return value.lower()


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
    policy: str = Field(min_length=1, max_length=100)
    category: str = Field(min_length=1, max_length=100)
    subject_category: str | None = Field(default=None, max_length=100)
    context: str | None = Field(default=None, max_length=200)
    outcome: str | None = Field(default=None, max_length=100)
    source: str | None = Field(default=None, max_length=100)
    collected_at: AwareDatetime
    payload: dict[str, Any]


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
    restricted_at: datetime | None
    restriction_ground: str | None
    created_at: datetime
    updated_at: datetime
    payload: dict[str, Any]


class EventCreate(_In):
    type: str = Field(min_length=1, max_length=100)
    context: str = Field(min_length=1, max_length=200)
    occurred_at: AwareDatetime


class EventCreated(BaseModel):
    id: uuid.UUID
    affected_records: int


class ImportFailure(BaseModel):
    line: int
    error: str


class ImportResult(BaseModel):
    imported: int
    failed: list[ImportFailure]
