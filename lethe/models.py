"""Tables owned by the composition root."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlmodel import Column, Field, SQLModel, String

from records.db import UTCDateTime


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_key"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    name: str = Field(sa_column=Column(String(200), nullable=False))
    role: str = Field(sa_column=Column(String(20), nullable=False))
    # The public prefix finds the row; only a hash of the secret part is stored.
    prefix: str = Field(sa_column=Column(String(16), nullable=False, unique=True))
    secret_hash: str = Field(sa_column=Column(String(64), nullable=False))
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    revoked_at: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime(), nullable=True)
    )
