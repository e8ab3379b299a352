"""Tables of data-subject requests: the request, the outbox, disclosures, notices, intake hits.

No column holds personal data in clear: what the requester wrote (e-mail, details, changes) is
sealed with the keyring (`intake_sealed`), codes and tokens are stored as salted hashes.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, LargeBinary, String, Text, Uuid
from sqlmodel import Column, Field, SQLModel

from records.db import UTCDateTime


class RequestType(enum.StrEnum):
    access = "access"
    rectification = "rectification"
    erasure = "erasure"
    restriction = "restriction"
    objection = "objection"
    portability = "portability"


class RequestStatus(enum.StrEnum):
    awaiting_identity = "awaiting_identity"
    # too many wrong one-time codes: only the staff can re-issue a code (or refuse the request)
    locked = "locked"
    verified = "verified"
    # objection: the data is restricted while the controller assesses the objection
    awaiting_assessment = "awaiting_assessment"
    completed = "completed"
    partial = "partial"
    rejected = "rejected"


CLOSED_STATUSES = frozenset(
    {RequestStatus.completed, RequestStatus.partial, RequestStatus.rejected}
)


class DsrRequest(SQLModel, table=True):
    __tablename__ = "dsr_request"
    __table_args__ = (
        Index("ix_dsr_request_status_due_at", "status", "due_at"),
        Index("ix_dsr_request_subject_id", "subject_id"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, sa_column=Column(Uuid(), primary_key=True))
    type: str = Field(sa_column=Column(String(20), nullable=False))
    status: str = Field(sa_column=Column(String(30), nullable=False))
    channel: str = Field(sa_column=Column(String(10), nullable=False))  # public | staff
    # Null when the e-mail matched no subject: the answer is then "we hold nothing".
    subject_id: uuid.UUID | None = Field(
        default=None,
        sa_column=Column(Uuid(), ForeignKey("subject.id", ondelete="SET NULL"), nullable=True),
    )
    intake_sealed: bytes = Field(sa_column=Column(LargeBinary(), nullable=False))
    received_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    original_due_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    due_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    extended_months: int | None = Field(default=None, sa_column=Column(Integer(), nullable=True))
    extension_reason: str | None = Field(default=None, sa_column=Column(Text(), nullable=True))
    extended_at: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime(), nullable=True)
    )
    otp_hash: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))
    otp_salt: str | None = Field(default=None, sa_column=Column(String(32), nullable=True))
    otp_expires_at: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime(), nullable=True)
    )
    otp_attempts: int = Field(default=0, sa_column=Column(Integer(), nullable=False, default=0))
    # Set by the wrong code that used up the attempts; only a staff re-issue clears it.
    otp_locked_at: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime(), nullable=True)
    )
    verified_at: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime(), nullable=True)
    )
    outcome: str | None = Field(default=None, sa_column=Column(String(20), nullable=True))
    # Reasons, grounds, record and hold ids: never personal data.
    outcome_details: dict[str, Any] | None = Field(
        default=None, sa_column=Column(JSON(), nullable=True)
    )
    closed_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))
    package_token_hash: str | None = Field(
        default=None, sa_column=Column(String(64), nullable=True)
    )
    package_token_expires_at: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime(), nullable=True)
    )
    lift_notified_at: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime(), nullable=True)
    )
    created_by: str = Field(sa_column=Column(String(80), nullable=False))


class NotificationOutbox(SQLModel, table=True):
    """Development delivery (no SMTP host): the message is kept here and not sent.

    Kept only while needed (`dsr.notifier`): until `expires_at` (a code's or a package link's
    end, else a retention cap), and never after the subject it was written to is erased.
    """

    __tablename__ = "notification_outbox"
    __table_args__ = (
        Index("ix_notification_outbox_subject_id", "subject_id"),
        Index("ix_notification_outbox_expires_at", "expires_at"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, sa_column=Column(Uuid(), primary_key=True))
    channel: str = Field(sa_column=Column(String(10), nullable=False))  # email | webhook
    recipient: str = Field(sa_column=Column(String(500), nullable=False))
    subject: str = Field(sa_column=Column(String(300), nullable=False))
    body: str = Field(sa_column=Column(Text(), nullable=False))
    request_id: uuid.UUID | None = Field(default=None, sa_column=Column(Uuid(), nullable=True))
    # The data subject the message is addressed to (None: a recipient, the controller, or a
    # requester we hold nothing about). No foreign key: the row must go before, not with, it.
    subject_id: uuid.UUID | None = Field(default=None, sa_column=Column(Uuid(), nullable=True))
    expires_at: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime(), nullable=True)
    )
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class DsrDisclosure(SQLModel, table=True):
    """A record disclosed to a recipient (EUDPR Art. 21): kept after the record is erased."""

    __tablename__ = "dsr_disclosure"
    __table_args__ = (Index("ix_dsr_disclosure_record_id", "record_id"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, sa_column=Column(Uuid(), primary_key=True))
    record_id: uuid.UUID = Field(sa_column=Column(Uuid(), nullable=False))
    subject_id: uuid.UUID | None = Field(default=None, sa_column=Column(Uuid(), nullable=True))
    recipient: str = Field(sa_column=Column(String(200), nullable=False))
    channel: str | None = Field(default=None, sa_column=Column(String(10), nullable=True))
    address: str | None = Field(default=None, sa_column=Column(String(500), nullable=True))
    disclosed_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    recorded_by: str = Field(sa_column=Column(String(80), nullable=False))


class DsrRecipientNotice(SQLModel, table=True):
    """A notice to a recipient after rectification, erasure or restriction, or why none was sent."""

    __tablename__ = "dsr_recipient_notice"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, sa_column=Column(Uuid(), primary_key=True))
    request_id: uuid.UUID = Field(
        sa_column=Column(Uuid(), ForeignKey("dsr_request.id"), nullable=False, index=True)
    )
    recipient: str = Field(sa_column=Column(String(200), nullable=False))
    channel: str | None = Field(default=None, sa_column=Column(String(10), nullable=True))
    status: str = Field(sa_column=Column(String(12), nullable=False))  # sent | impossible
    reason: str | None = Field(default=None, sa_column=Column(Text(), nullable=True))
    record_count: int = Field(sa_column=Column(Integer(), nullable=False))
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class DsrIntakeHit(SQLModel, table=True):
    """One public intake, counted per keyed hash of the client address and of the e-mail."""

    __tablename__ = "dsr_intake_hit"
    __table_args__ = (Index("ix_dsr_intake_hit_bucket_at", "bucket", "at"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, sa_column=Column(Uuid(), primary_key=True))
    bucket: str = Field(sa_column=Column(String(64), nullable=False))
    at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
