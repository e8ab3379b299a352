"""API shapes of data-subject requests (API.md "Data-subject requests")."""

from __future__ import annotations

import enum
import json
import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

from dsr.models import RequestType
from records.types import EmailAddress, Instant, JsonObject, SafeStr

# A rectification names a few fields; each new value is a field, not a document.
MAX_CHANGES = 200
MAX_CHANGE_VALUE = 10_000


class RejectionGround(enum.StrEnum):
    manifestly_unfounded = "manifestly_unfounded"  # EUDPR Art. 14(5), GDPR Art. 12(5)
    excessive = "excessive"  # EUDPR Art. 14(5), GDPR Art. 12(5)
    art_25_restriction = "art_25_restriction"  # EUDPR Art. 25, GDPR Art. 23
    identity_not_established = "identity_not_established"  # EUDPR Art. 14(6)


class RequestCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: RequestType
    email: EmailAddress
    details: SafeStr | None = Field(default=None, max_length=4000)
    # rectification: {record_id: {field: new value}} or {field: new value} for every record
    changes: JsonObject | None = Field(default=None, max_length=MAX_CHANGES)
    # staff intake only: the controller established the requester's identity otherwise
    identity_verified: StrictBool = False

    @field_validator("changes")
    @classmethod
    def _bounded_changes(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        for key, item in (value or {}).items():
            if len(key) > 200:
                raise ValueError("a field name is at most 200 characters")
            for inner in item.values() if isinstance(item, dict) else [item]:
                if len(json.dumps(inner)) > MAX_CHANGE_VALUE:
                    raise ValueError(f"a new value is at most {MAX_CHANGE_VALUE} bytes of JSON")
            if isinstance(item, dict) and len(item) > MAX_CHANGES:
                raise ValueError(f"at most {MAX_CHANGES} fields a record")
        return value


class RequestReceipt(BaseModel):
    id: uuid.UUID
    status: str
    received_at: datetime
    due_at: datetime


class VerifyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: SafeStr = Field(min_length=1, max_length=20)


class StatusRead(BaseModel):
    id: uuid.UUID
    type: str
    status: str
    # Too many wrong codes: the code no longer opens the request (status `locked` while
    # awaiting identity); only the controller's staff can send a fresh code.
    locked: bool = False
    received_at: datetime
    due_at: datetime
    extended: bool
    outcome: str | None
    outcome_details: dict[str, Any] | None


class NoticeRead(BaseModel):
    recipient: str
    channel: str | None
    status: str
    reason: str | None
    record_count: int
    created_at: datetime


class RequestRead(BaseModel):
    id: uuid.UUID
    type: str
    status: str
    locked: bool = False
    channel: str
    subject_id: uuid.UUID | None
    received_at: datetime
    original_due_at: datetime
    due_at: datetime
    overdue: bool
    extended_months: int | None
    extension_reason: str | None
    verified_at: datetime | None
    outcome: str | None
    outcome_details: dict[str, Any] | None
    closed_at: datetime | None
    notices: list[NoticeRead] = Field(default_factory=list)


class ExtendBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    months: Literal[1, 2]
    reason: SafeStr = Field(min_length=3, max_length=2000)


class RejectBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: SafeStr = Field(min_length=3, max_length=2000)
    ground: RejectionGround


class ProcessBody(BaseModel):
    """Optional: for an objection, the controller's assessment (`upheld`) once made."""

    model_config = ConfigDict(extra="forbid")
    upheld: StrictBool | None = None
    reason: SafeStr | None = Field(default=None, max_length=2000)


class DisclosureCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    record_ids: list[uuid.UUID] = Field(min_length=1, max_length=10_000)
    recipient: SafeStr = Field(min_length=1, max_length=200)
    channel: Literal["email", "webhook"] | None = None
    address: SafeStr | None = Field(default=None, max_length=500)
    disclosed_at: Instant | None = None


class DisclosureRead(BaseModel):
    ids: list[uuid.UUID]
