"""Tables of the policy registry.

- `processing_record`: one row per record reference (`DPR-EC-01488`), pointing at its current
  version.
- `processing_record_version`: every version ever loaded, immutable: the validated document as
  JSON, the YAML text it came from, and the SHA-256 `content_hash` of the document's canonical
  JSON (so comments and formatting do not make a new version; loading the same content again
  makes none). Decisions store the version number they were made under; old versions stay.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String, Text, UniqueConstraint, Uuid
from sqlmodel import Column, Field, SQLModel

from records.db import UTCDateTime


class ProcessingRecord(SQLModel, table=True):
    __tablename__ = "processing_record"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, sa_column=Column(Uuid(), primary_key=True))
    reference: str = Field(sa_column=Column(String(64), nullable=False, unique=True))
    title: str = Field(sa_column=Column(String(500), nullable=False))
    current_version: int = Field(sa_column=Column(Integer(), nullable=False))
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    updated_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class ProcessingRecordVersion(SQLModel, table=True):
    __tablename__ = "processing_record_version"
    __table_args__ = (
        UniqueConstraint("record_id", "version", name="uq_processing_record_version"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, sa_column=Column(Uuid(), primary_key=True))
    record_id: uuid.UUID = Field(
        sa_column=Column(Uuid(), ForeignKey("processing_record.id"), nullable=False, index=True)
    )
    version: int = Field(sa_column=Column(Integer(), nullable=False))
    content_hash: str = Field(sa_column=Column(String(64), nullable=False))
    document: dict[str, Any] = Field(sa_column=Column(JSON(), nullable=False))
    source_text: str = Field(sa_column=Column(Text(), nullable=False))
    source_name: str = Field(sa_column=Column(String(300), nullable=False))
    loaded_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    loaded_by: str = Field(sa_column=Column(String(200), nullable=False))
