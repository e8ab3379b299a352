"""Hardening (issue 10): one e-mail one subject, materialised restriction, outbox purge, OTP.

Each part of the hardening work adds its operations in its own section below, so the history
stays linear (one revision for the issue).

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

from records.db import UTCDateTime  # noqa: F401

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # --- identity: one e-mail, one subject ---
    # Exact keyed digests for uniqueness among live subjects. The migration has no key file, so
    # subjects stored before it keep NULL until `lethe subjects merge-duplicates` fills the
    # digests in and merges the duplicates the old ingest made (see records.service).
    with op.batch_alter_table("subject") as batch:
        batch.add_column(sa.Column("email_key", sa.String(64), nullable=True))
        batch.add_column(sa.Column("external_id_key", sa.String(64), nullable=True))
    op.create_index(
        "ux_subject_email_key",
        "subject",
        ["email_key"],
        unique=True,
        sqlite_where=sa.text("erased_at IS NULL"),
        postgresql_where=sa.text("erased_at IS NULL"),
    )
    op.create_index(
        "ux_subject_external_id_key",
        "subject",
        ["external_id_key"],
        unique=True,
        sqlite_where=sa.text("erased_at IS NULL"),
        postgresql_where=sa.text("erased_at IS NULL"),
    )
    # --- restriction materialised on personal_record ---
    # --- dsr: outbox, OTP, intake ---
    # OTP: when the N-th wrong code locked the request's code (kept while the limit changes)
    with op.batch_alter_table("dsr_request") as batch:
        batch.add_column(sa.Column("otp_locked_at", UTCDateTime(), nullable=True))
    # --- retention: dry runs, checkpoints ---
    pass


def downgrade() -> None:
    # --- retention: dry runs, checkpoints ---
    # --- dsr: outbox, OTP, intake ---
    with op.batch_alter_table("dsr_request") as batch:
        batch.drop_column("otp_locked_at")
    # --- restriction materialised on personal_record ---
    # --- identity: one e-mail, one subject ---
    op.drop_index("ux_subject_external_id_key", table_name="subject")
    op.drop_index("ux_subject_email_key", table_name="subject")
    with op.batch_alter_table("subject") as batch:
        batch.drop_column("external_id_key")
        batch.drop_column("email_key")
    pass
