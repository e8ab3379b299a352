"""Hardening (issue 10): one e-mail one subject, materialised restriction, outbox purge, OTP.

Each part of the hardening work adds its operations in its own section below, so the history
stays linear (one revision for the issue).

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from records.db import UTCDateTime

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
    # personal_record.restricted_at / restriction_ground exist since 0002; 0007 only fills them
    # at ingest (`rule:restrict_processing`), so no column here.
    # holds: what the data subject is told, apart from the internal reason (EUDPR Art. 25)
    with op.batch_alter_table("legal_hold") as batch:
        batch.add_column(sa.Column("subject_reason", sa.Text(), nullable=True))
    # outbox privacy: whom a message was written to, and when its clear text must go
    with op.batch_alter_table("notification_outbox") as batch:
        batch.add_column(sa.Column("subject_id", sa.Uuid(), nullable=True))
        batch.add_column(sa.Column("expires_at", UTCDateTime(), nullable=True))
    op.create_index("ix_notification_outbox_subject_id", "notification_outbox", ["subject_id"])
    op.create_index("ix_notification_outbox_expires_at", "notification_outbox", ["expires_at"])
    # --- dsr: outbox, OTP, intake ---
    # OTP: when the N-th wrong code locked the request's code (kept while the limit changes)
    with op.batch_alter_table("dsr_request") as batch:
        batch.add_column(sa.Column("otp_locked_at", UTCDateTime(), nullable=True))
    # --- retention: dry runs, checkpoints ---
    pass
    # --- connectors: external locations ---
    # A record indexed from a source system (connectors/): where its data lives (connector,
    # table, key as canonical JSON); its payload stays NULL, the row is read live.
    with op.batch_alter_table("personal_record") as batch:
        batch.add_column(sa.Column("external_connector", sa.String(100), nullable=True))
        batch.add_column(sa.Column("external_table", sa.String(100), nullable=True))
        batch.add_column(sa.Column("external_key", sa.String(500), nullable=True))
    op.create_index(
        "ux_personal_record_external",
        "personal_record",
        # The key leads: a sync looks a batch of keys up with `external_key = ANY(…)`.
        ["external_key", "external_table", "external_connector"],
        unique=True,
    )


def downgrade() -> None:
    # --- connectors: external locations ---
    op.drop_index("ux_personal_record_external", table_name="personal_record")
    with op.batch_alter_table("personal_record") as batch:
        batch.drop_column("external_key")
        batch.drop_column("external_table")
        batch.drop_column("external_connector")
    # --- retention: dry runs, checkpoints ---
    # --- dsr: outbox, OTP, intake ---
    with op.batch_alter_table("dsr_request") as batch:
        batch.drop_column("otp_locked_at")
    # --- restriction materialised on personal_record ---
    op.drop_index("ix_notification_outbox_expires_at", table_name="notification_outbox")
    op.drop_index("ix_notification_outbox_subject_id", table_name="notification_outbox")
    with op.batch_alter_table("notification_outbox") as batch:
        batch.drop_column("expires_at")
        batch.drop_column("subject_id")
    with op.batch_alter_table("legal_hold") as batch:
        batch.drop_column("subject_reason")
    # --- identity: one e-mail, one subject ---
    op.drop_index("ux_subject_external_id_key", table_name="subject")
    op.drop_index("ux_subject_email_key", table_name="subject")
    with op.batch_alter_table("subject") as batch:
        batch.drop_column("external_id_key")
        batch.drop_column("email_key")
    pass
