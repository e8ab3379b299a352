"""Tables of the audit trail: entries (the Merkle leaves), stored subtrees, signed checkpoints.

`audit_entry.idx` is the dense, gap-free leaf index (0-based). `body` is the exact canonical
JSON string whose UTF-8 bytes are the leaf data; `leaf_hash` caches H(0x00 ‖ body) and
`audit_subtree` caches the hashes of completed, aligned subtrees of 2**level leaves (level ≥
SUBTREE_MIN_LEVEL), so tree heads and proofs never rehash the whole log. The verifier trusts
neither cache: it recomputes everything from the bodies.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, Index, LargeBinary, SmallInteger, String, Text
from sqlmodel import Column, Field, SQLModel

from records.db import UTCDateTime


class AuditEntry(SQLModel, table=True):
    __tablename__ = "audit_entry"

    idx: int = Field(sa_column=Column(BigInteger(), primary_key=True, autoincrement=False))
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    action: str = Field(sa_column=Column(String(100), nullable=False))
    actor: str = Field(sa_column=Column(String(100), nullable=False))
    subject_id: uuid.UUID | None = Field(default=None, index=True, nullable=True)
    target: str | None = Field(default=None, sa_column=Column(String(200), nullable=True))
    body: str = Field(sa_column=Column(Text(), nullable=False))
    leaf_hash: bytes = Field(sa_column=Column(LargeBinary(32), nullable=False))


class AuditSubtree(SQLModel, table=True):
    """Hash of the completed subtree of leaves [start, start + 2**level)."""

    __tablename__ = "audit_subtree"

    level: int = Field(sa_column=Column(SmallInteger(), primary_key=True, autoincrement=False))
    start: int = Field(sa_column=Column(BigInteger(), primary_key=True, autoincrement=False))
    hash: bytes = Field(sa_column=Column(LargeBinary(32), nullable=False))


class AuditCheckpoint(SQLModel, table=True):
    """A signed tree head: `note` is the C2SP signed note exactly as served."""

    __tablename__ = "audit_checkpoint"
    __table_args__ = (Index("ix_audit_checkpoint_size", "size"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    size: int = Field(sa_column=Column(BigInteger(), nullable=False))
    root_hash: bytes = Field(sa_column=Column(LargeBinary(32), nullable=False))
    note: str = Field(sa_column=Column(Text(), nullable=False))
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
