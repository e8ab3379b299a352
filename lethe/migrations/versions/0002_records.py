"""records tables: subject, data_key, personal_record, business_event.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from records.db import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "subject",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("identity", sa.LargeBinary(), nullable=True),
        sa.Column("email_index", sa.Integer(), nullable=True),
        sa.Column("external_id_index", sa.Integer(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("erased_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_subject_email_index", "subject", ["email_index", "created_at", "erased_at"])
    op.create_index("ix_subject_external_id_index", "subject", ["external_id_index"])

    op.create_table(
        "data_key",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("subject_id", sa.Uuid(), nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=True),
        sa.Column("kek_epoch", sa.Integer(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("rewrapped_at", UTCDateTime(), nullable=True),
        sa.Column("destroyed_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.ForeignKeyConstraint(["subject_id"], ["subject.id"], ondelete="CASCADE"),
        sa.UniqueConstraint("subject_id"),
    )
    op.create_index("ix_data_key_kek_epoch", "data_key", ["kek_epoch"])

    op.create_table(
        "personal_record",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("subject_id", sa.Uuid(), nullable=False),
        sa.Column("policy", sa.String(100), nullable=False),
        sa.Column("policy_version", sa.Integer(), nullable=True),
        sa.Column("category", sa.String(100), nullable=False),
        sa.Column("subject_category", sa.String(100), nullable=True),
        sa.Column("context", sa.String(200), nullable=True),
        sa.Column("outcome", sa.String(100), nullable=True),
        sa.Column("source", sa.String(100), nullable=True),
        sa.Column("collected_at", UTCDateTime(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=True),
        sa.Column("payload_hash", sa.String(64), nullable=False),
        sa.Column("due_at", UTCDateTime(), nullable=True),
        sa.Column("rule_id", sa.String(100), nullable=True),
        sa.Column("rule_version", sa.Integer(), nullable=True),
        sa.Column("action", sa.String(20), nullable=True),
        sa.Column("handover_to", sa.String(100), nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("restricted_at", UTCDateTime(), nullable=True),
        sa.Column("restriction_ground", sa.String(100), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.ForeignKeyConstraint(["subject_id"], ["subject.id"]),
    )
    op.create_index("ix_personal_record_due_at_id", "personal_record", ["due_at", "id"])
    op.create_index("ix_personal_record_context", "personal_record", ["context"])
    op.create_index("ix_personal_record_subject_id", "personal_record", ["subject_id"])
    op.create_index("ix_personal_record_policy", "personal_record", ["policy"])

    op.create_table(
        "business_event",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("type", sa.String(100), nullable=False),
        sa.Column("context", sa.String(200), nullable=False),
        sa.Column("occurred_at", UTCDateTime(), nullable=False),
        sa.Column("recorded_at", UTCDateTime(), nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("affected_records", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_business_event_type_context", "business_event", ["type", "context"])


def downgrade() -> None:
    op.drop_table("business_event")
    op.drop_table("personal_record")
    op.drop_table("data_key")
    op.drop_table("subject")
