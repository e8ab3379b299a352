"""dsr tables: requests, the development outbox, disclosures, recipient notices, intake hits.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from records.db import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dsr_request",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("type", sa.String(20), nullable=False),
        sa.Column("status", sa.String(30), nullable=False),
        sa.Column("channel", sa.String(10), nullable=False),
        sa.Column("subject_id", sa.Uuid(), nullable=True),
        sa.Column("intake_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.Column("original_due_at", UTCDateTime(), nullable=False),
        sa.Column("due_at", UTCDateTime(), nullable=False),
        sa.Column("extended_months", sa.Integer(), nullable=True),
        sa.Column("extension_reason", sa.Text(), nullable=True),
        sa.Column("extended_at", UTCDateTime(), nullable=True),
        sa.Column("otp_hash", sa.String(64), nullable=True),
        sa.Column("otp_salt", sa.String(32), nullable=True),
        sa.Column("otp_expires_at", UTCDateTime(), nullable=True),
        sa.Column("otp_attempts", sa.Integer(), nullable=False),
        sa.Column("verified_at", UTCDateTime(), nullable=True),
        sa.Column("outcome", sa.String(20), nullable=True),
        sa.Column("outcome_details", sa.JSON(), nullable=True),
        sa.Column("closed_at", UTCDateTime(), nullable=True),
        sa.Column("package_token_hash", sa.String(64), nullable=True),
        sa.Column("package_token_expires_at", UTCDateTime(), nullable=True),
        sa.Column("lift_notified_at", UTCDateTime(), nullable=True),
        sa.Column("created_by", sa.String(80), nullable=False),
        sa.ForeignKeyConstraint(["subject_id"], ["subject.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_dsr_request_status_due_at", "dsr_request", ["status", "due_at"])
    op.create_index("ix_dsr_request_subject_id", "dsr_request", ["subject_id"])
    op.create_table(
        "notification_outbox",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("channel", sa.String(10), nullable=False),
        sa.Column("recipient", sa.String(500), nullable=False),
        sa.Column("subject", sa.String(300), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("request_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "dsr_disclosure",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("record_id", sa.Uuid(), nullable=False),
        sa.Column("subject_id", sa.Uuid(), nullable=True),
        sa.Column("recipient", sa.String(200), nullable=False),
        sa.Column("channel", sa.String(10), nullable=True),
        sa.Column("address", sa.String(500), nullable=True),
        sa.Column("disclosed_at", UTCDateTime(), nullable=False),
        sa.Column("recorded_by", sa.String(80), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_dsr_disclosure_record_id", "dsr_disclosure", ["record_id"])
    op.create_table(
        "dsr_recipient_notice",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("request_id", sa.Uuid(), nullable=False),
        sa.Column("recipient", sa.String(200), nullable=False),
        sa.Column("channel", sa.String(10), nullable=True),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("record_count", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["request_id"], ["dsr_request.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_dsr_recipient_notice_request_id", "dsr_recipient_notice", ["request_id"])
    op.create_table(
        "dsr_intake_hit",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("bucket", sa.String(64), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_dsr_intake_hit_bucket_at", "dsr_intake_hit", ["bucket", "at"])


def downgrade() -> None:
    op.drop_index("ix_dsr_intake_hit_bucket_at", table_name="dsr_intake_hit")
    op.drop_table("dsr_intake_hit")
    op.drop_index("ix_dsr_recipient_notice_request_id", table_name="dsr_recipient_notice")
    op.drop_table("dsr_recipient_notice")
    op.drop_index("ix_dsr_disclosure_record_id", table_name="dsr_disclosure")
    op.drop_table("dsr_disclosure")
    op.drop_table("notification_outbox")
    op.drop_index("ix_dsr_request_subject_id", table_name="dsr_request")
    op.drop_index("ix_dsr_request_status_due_at", table_name="dsr_request")
    op.drop_table("dsr_request")
