"""retention tables: legal holds, disposition runs and items, job leases.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from records.db import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "legal_hold",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("scope_kind", sa.String(20), nullable=False),
        sa.Column("scope_value", sa.String(200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("case_reference", sa.String(200), nullable=True),
        sa.Column("owner", sa.String(100), nullable=False),
        sa.Column("placed_at", UTCDateTime(), nullable=False),
        sa.Column("released_at", UTCDateTime(), nullable=True),
        sa.Column("released_by", sa.String(100), nullable=True),
        sa.Column("release_reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_legal_hold_scope", "legal_hold", ["scope_kind", "scope_value"])
    op.create_table(
        "purge_run",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("trigger", sa.String(20), nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("horizon_at", UTCDateTime(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=True),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("planned_deletions", sa.Integer(), nullable=False),
        sa.Column("pause_reason", sa.String(200), nullable=True),
        sa.Column("approved_by", sa.String(100), nullable=True),
        sa.Column("approved_at", UTCDateTime(), nullable=True),
        sa.Column("certificate_seq", sa.Integer(), nullable=True),
        sa.Column("certificate", sa.Text(), nullable=True),
        sa.Column("certificate_sha256", sa.String(64), nullable=True),
        sa.Column("signature", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("certificate_seq", name="uq_purge_run_certificate_seq"),
    )
    op.create_index("ix_purge_run_status", "purge_run", ["status"])
    op.create_table(
        "purge_item",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("record_id", sa.Uuid(), nullable=False),
        sa.Column("subject_id", sa.Uuid(), nullable=True),
        sa.Column("policy", sa.String(100), nullable=False),
        sa.Column("policy_version", sa.Integer(), nullable=True),
        sa.Column("rule_id", sa.String(100), nullable=True),
        sa.Column("rule_version", sa.Integer(), nullable=True),
        sa.Column("action", sa.String(20), nullable=True),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("note", sa.String(400), nullable=True),
        sa.Column("due_at", UTCDateTime(), nullable=True),
        sa.Column("acted_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("run_id", "record_id", name="uq_purge_item_run_record"),
    )
    op.create_table(
        "purge_batch",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("acted_at", UTCDateTime(), nullable=False),
        sa.Column("deleted_count", sa.Integer(), nullable=False),
        sa.Column("deleted_ids", sa.Text(), nullable=False),
        sa.Column("keys_destroyed", sa.Text(), nullable=False),
        sa.Column("by_rule", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_purge_batch_run_id", "purge_batch", ["run_id"])
    op.create_table(
        "job_lease",
        sa.Column("job_id", sa.String(100), nullable=False),
        sa.Column("holder", sa.String(200), nullable=True),
        sa.Column("expires_at", UTCDateTime(), nullable=True),
        sa.Column("last_started_at", UTCDateTime(), nullable=True),
        sa.Column("last_finished_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("job_id"),
    )


def downgrade() -> None:
    op.drop_table("job_lease")
    op.drop_index("ix_purge_batch_run_id", table_name="purge_batch")
    op.drop_table("purge_batch")
    op.drop_table("purge_item")
    op.drop_index("ix_purge_run_status", table_name="purge_run")
    op.drop_table("purge_run")
    op.drop_index("ix_legal_hold_scope", table_name="legal_hold")
    op.drop_table("legal_hold")
