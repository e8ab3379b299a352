"""Every table of every package, for Alembic and the models-versus-migrations test."""

from __future__ import annotations

from sqlalchemy import MetaData
from sqlmodel import SQLModel


def target_metadata() -> MetaData:
    # Imported for their side effect: each models module registers its tables.
    import dsr.models  # noqa: F401
    import retention.models  # noqa: F401

    return SQLModel.metadata
