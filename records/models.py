"""Tables of this package: data subjects, their data keys, personal-data records, business events.

Nothing here holds personal data in clear: identity attributes and payloads are ciphertexts
(`records.crypto`), and look-up goes through full-length keyed digests of the e-mail and
external id (exact: one indexed query, nothing decrypted). The older truncated blind indexes
stay for subjects stored before 0007 that have no digest yet.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, LargeBinary, String, Uuid, text
from sqlmodel import Column, Field, SQLModel

from records.db import UTCDateTime


class RecordStatus(enum.StrEnum):
    active = "active"
    handed_over = "handed_over"
    anonymised = "anonymised"
    review = "review"


# `restriction_ground` of a record restricted by its retention rule (`restrict_processing`:
# storage only until the action, e.g. candidates not invited to the panels). Grounds from the
# data subject (EUDPR Art. 20(1)(a)-(d)) are written by dsr and take precedence over this one.
RULE_RESTRICTION_GROUND = "rule:restrict_processing"


class DueAction(enum.StrEnum):
    delete = "delete"
    anonymise = "anonymise"
    review = "review"
    handover = "handover"
    keep = "keep"


class Subject(SQLModel, table=True):
    """A data subject: a random UUID (never derived from personal data) and encrypted identity."""

    __tablename__ = "subject"
    __table_args__ = (
        # The truncated buckets find only the subjects stored before 0007 that
        # `lethe subjects merge-duplicates` has not keyed yet (see `records.service`).
        Index("ix_subject_email_index", "email_index", "created_at", "erased_at"),
        Index("ix_subject_external_id_index", "external_id_index"),
        # One e-mail (and one external id) is one live subject, enforced by the database so
        # that two concurrent ingests cannot both create it. Partial: an erased subject keeps
        # nothing that could block the person from coming back.
        Index(
            "ux_subject_email_key",
            "email_key",
            unique=True,
            sqlite_where=text("erased_at IS NULL"),
            postgresql_where=text("erased_at IS NULL"),
        ),
        Index(
            "ux_subject_external_id_key",
            "external_id_key",
            unique=True,
            sqlite_where=text("erased_at IS NULL"),
            postgresql_where=text("erased_at IS NULL"),
        ),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, sa_column=Column(Uuid(), primary_key=True))
    # JSON {"email","name","external_id","attributes"} encrypted under the subject's data key.
    identity: bytes | None = Field(default=None, sa_column=Column(LargeBinary(), nullable=True))
    # Truncated HMAC buckets (see `Keyring.blind_index`); NULL once the subject is erased. Still
    # written, so that a subject not keyed yet is found and a downgrade below 0007 finds all.
    email_index: int | None = Field(default=None, sa_column=Column(Integer(), nullable=True))
    external_id_index: int | None = Field(default=None, sa_column=Column(Integer(), nullable=True))
    # Full-length keyed HMACs (`records.service.exact_key`) for the uniqueness above; the truncated
    # buckets cannot be unique. NULL once erased, and on subjects stored before 0007 until
    # `lethe subjects merge-duplicates` fills them in.
    email_key: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))
    external_id_key: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    updated_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    erased_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))


class DataKey(SQLModel, table=True):
    """The subject's AES-256 data key, wrapped by a key-encryption-key epoch.

    Crypto-shredding sets `wrapped_key` to NULL and `destroyed_at`: the row stays so that a
    decryption attempt says "key destroyed" rather than "unknown key".
    """

    __tablename__ = "data_key"
    __table_args__ = (Index("ix_data_key_kek_epoch", "kek_epoch"),)

    # The key id carried in every ciphertext made with this key.
    id: uuid.UUID = Field(default_factory=uuid.uuid4, sa_column=Column(Uuid(), primary_key=True))
    subject_id: uuid.UUID = Field(
        sa_column=Column(
            Uuid(), ForeignKey("subject.id", ondelete="CASCADE"), nullable=False, unique=True
        )
    )
    wrapped_key: bytes | None = Field(default=None, sa_column=Column(LargeBinary(), nullable=True))
    kek_epoch: int | None = Field(default=None, sa_column=Column(Integer(), nullable=True))
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    rewrapped_at: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime(), nullable=True)
    )
    destroyed_at: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime(), nullable=True)
    )


class PersonalRecord(SQLModel, table=True):
    """One piece of governed personal data, bound to a processing record and a data category.

    `due_at` is materialized when the rule's trigger has happened (DESIGN §5.3) and indexed with
    `id` so disposition runs page through what is due by keyset, never by scanning the table.
    """

    __tablename__ = "personal_record"
    __table_args__ = (
        Index("ix_personal_record_due_at_id", "due_at", "id"),
        Index("ix_personal_record_context", "context"),
        Index("ix_personal_record_subject_id", "subject_id"),
        Index("ix_personal_record_policy", "policy"),
        Index(
            "ux_personal_record_external",
            "external_key",
            "external_table",
            "external_connector",
            unique=True,
        ),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, sa_column=Column(Uuid(), primary_key=True))
    subject_id: uuid.UUID = Field(
        sa_column=Column(Uuid(), ForeignKey("subject.id"), nullable=False)
    )
    policy: str = Field(sa_column=Column(String(100), nullable=False))
    policy_version: int | None = Field(default=None, sa_column=Column(Integer(), nullable=True))
    category: str = Field(sa_column=Column(String(100), nullable=False))
    subject_category: str | None = Field(default=None, sa_column=Column(String(100), nullable=True))
    context: str | None = Field(default=None, sa_column=Column(String(200), nullable=True))
    outcome: str | None = Field(default=None, sa_column=Column(String(100), nullable=True))
    source: str | None = Field(default=None, sa_column=Column(String(100), nullable=True))
    collected_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    payload: bytes | None = Field(default=None, sa_column=Column(LargeBinary(), nullable=True))
    payload_hash: str = Field(sa_column=Column(String(64), nullable=False))
    due_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))
    rule_id: str | None = Field(default=None, sa_column=Column(String(100), nullable=True))
    rule_version: int | None = Field(default=None, sa_column=Column(Integer(), nullable=True))
    action: str | None = Field(default=None, sa_column=Column(String(20), nullable=True))
    handover_to: str | None = Field(default=None, sa_column=Column(String(100), nullable=True))
    status: str = Field(
        default=RecordStatus.active.value, sa_column=Column(String(20), nullable=False)
    )
    # Materialised restriction (storage only): set at ingest from the rule, by restriction and
    # objection requests; while set, only the DPO may read the record (and the subject, in
    # their access package).
    restricted_at: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime(), nullable=True)
    )
    restriction_ground: str | None = Field(
        default=None, sa_column=Column(String(100), nullable=True)
    )
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    updated_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    # Where the data lives when a connector indexed it from a source system (payload NULL):
    # the connector, the table and the row's key as canonical JSON.
    external_connector: str | None = Field(
        default=None, sa_column=Column(String(100), nullable=True)
    )
    external_table: str | None = Field(default=None, sa_column=Column(String(100), nullable=True))
    external_key: str | None = Field(default=None, sa_column=Column(String(500), nullable=True))


class BusinessEvent(SQLModel, table=True):
    """Something that happened in a source system (`call.closed` for a context at a time)."""

    __tablename__ = "business_event"
    __table_args__ = (Index("ix_business_event_type_context", "type", "context"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, sa_column=Column(Uuid(), primary_key=True))
    type: str = Field(sa_column=Column(String(100), nullable=False))
    context: str = Field(sa_column=Column(String(200), nullable=False))
    occurred_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    recorded_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    actor: str = Field(sa_column=Column(String(100), nullable=False))
    affected_records: int = Field(default=0, sa_column=Column(Integer(), nullable=False))
