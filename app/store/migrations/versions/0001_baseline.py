"""Baseline: every table of the first Alembic-managed version (conversations, touchpoints, staff, outbox, jobs).

Idempotent, so it also upgrades a database made by create_all before Alembic (no alembic_version table): missing
tables are created, existing ones get their missing columns (added nullable) and indexes.

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

META = sa.MetaData()

sa.Table(
    "conversations",
    META,
    sa.Column("id", sa.String(length=64), nullable=False),
    sa.Column("visitor_id", sa.String(length=128), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("stage", sa.String(length=40), nullable=True),
    sa.Column("stage_confidence", sa.Float(), nullable=True),
    sa.Column("turns", sa.Integer(), nullable=False),
    sa.Column("identity", sa.JSON(), nullable=True),
    sa.Column("first_page", sa.JSON(), nullable=True),
    sa.PrimaryKeyConstraint("id"),
    sa.Index("ix_conversations_updated_at", "updated_at"),
    sa.Index("ix_conversations_visitor_id", "visitor_id"),
)

sa.Table(
    "curated_answers",
    META,
    sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
    sa.Column("question", sa.Text(), nullable=False),
    sa.Column("answer", sa.Text(), nullable=False),
    sa.Column("source_touchpoint_id", sa.String(length=64), nullable=True),
    sa.Column("visitor_id", sa.String(length=128), nullable=True),
    sa.Column("created_by", sa.String(length=120), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint("id"),
    sa.Index("ix_curated_answers_source_touchpoint_id", "source_touchpoint_id"),
    sa.Index("ix_curated_answers_updated_at", "updated_at"),
    sa.Index("ix_curated_answers_visitor_id", "visitor_id"),
)

sa.Table(
    "ingest_jobs",
    META,
    sa.Column("id", sa.String(length=32), nullable=False),
    sa.Column("target", sa.String(length=2048), nullable=False),
    sa.Column("source", sa.String(length=2100), nullable=True),
    sa.Column("dry_run", sa.Boolean(), nullable=False),
    sa.Column("status", sa.String(length=16), nullable=False),
    sa.Column("phase", sa.String(length=16), nullable=True),
    sa.Column("seen", sa.Integer(), nullable=False),
    sa.Column("processed", sa.Integer(), nullable=False),
    sa.Column("total", sa.Integer(), nullable=False),
    sa.Column("current", sa.String(length=2048), nullable=True),
    sa.Column("errors", sa.JSON(), nullable=True),
    sa.Column("skipped", sa.JSON(), nullable=True),
    sa.Column("report", sa.JSON(), nullable=True),
    sa.Column("message", sa.Text(), nullable=True),
    sa.Column("requested_by", sa.String(length=120), nullable=True),
    sa.Column("worker", sa.String(length=120), nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint("id"),
    sa.Index("ix_ingest_jobs_status", "status"),
)

sa.Table(
    "staff_tokens",
    META,
    sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
    sa.Column("name", sa.String(length=120), nullable=False),
    sa.Column("role", sa.String(length=16), nullable=False),
    sa.Column("token_hash", sa.String(length=64), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint("id"),
    sa.Index("ix_staff_tokens_token_hash", "token_hash", unique=True),
)

sa.Table(
    "stage_examples",
    META,
    sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
    sa.Column("text", sa.Text(), nullable=False),
    sa.Column("stage", sa.String(length=40), nullable=False),
    sa.Column("source_touchpoint_id", sa.String(length=64), nullable=True),
    sa.Column("visitor_id", sa.String(length=128), nullable=True),
    sa.Column("created_by", sa.String(length=120), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint("id"),
    sa.Index("ix_stage_examples_created_at", "created_at"),
    sa.Index("ix_stage_examples_source_touchpoint_id", "source_touchpoint_id", unique=True),
    sa.Index("ix_stage_examples_visitor_id", "visitor_id"),
)

sa.Table(
    "webhook_outbox",
    META,
    sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
    sa.Column("event_id", sa.String(length=40), nullable=False),
    sa.Column("event_type", sa.String(length=40), nullable=False),
    sa.Column("url", sa.String(length=2048), nullable=False),
    sa.Column("body", sa.Text(), nullable=False),
    sa.Column("visitor_id", sa.String(length=128), nullable=True),
    sa.Column("status", sa.String(length=16), nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
    sa.Column("locked_by", sa.String(length=80), nullable=True),
    sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("last_status", sa.Integer(), nullable=True),
    sa.Column("last_error", sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint("id"),
    sa.UniqueConstraint("event_id", "url", name="uq_webhook_outbox_event_url"),
    sa.Index("ix_webhook_outbox_due", "status", "next_attempt_at"),
    sa.Index("ix_webhook_outbox_event_id", "event_id"),
    sa.Index("ix_webhook_outbox_visitor_id", "visitor_id"),
)

sa.Table(
    "conversation_reviews",
    META,
    sa.Column("conversation_id", sa.String(length=64), nullable=False),
    sa.Column("reviewed_by", sa.String(length=120), nullable=False),
    sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(["conversation_id"], ["conversations.id"], ondelete="CASCADE"),
    sa.PrimaryKeyConstraint("conversation_id"),
)

sa.Table(
    "touchpoints",
    META,
    sa.Column("id", sa.String(length=64), nullable=False),
    sa.Column("conversation_id", sa.String(length=64), nullable=False),
    sa.Column("visitor_id", sa.String(length=128), nullable=False),
    sa.Column("turn", sa.Integer(), nullable=False),
    sa.Column("kind", sa.String(length=32), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("page", sa.JSON(), nullable=True),
    sa.Column("stage", sa.String(length=40), nullable=True),
    sa.Column("stage_confidence", sa.Float(), nullable=True),
    sa.Column("stage_evidence", sa.JSON(), nullable=True),
    sa.Column("stage_scores", sa.JSON(), nullable=True),
    sa.Column("previous_stage", sa.String(length=40), nullable=True),
    sa.Column("stage_changed", sa.Boolean(), nullable=False),
    sa.Column("question", sa.Text(), nullable=False),
    sa.Column("reply", sa.Text(), nullable=False),
    sa.Column("sources", sa.JSON(), nullable=True),
    sa.Column("suggestions", sa.JSON(), nullable=True),
    sa.Column("retrieval_score", sa.Float(), nullable=True),
    sa.Column("mode", sa.String(length=16), nullable=False),
    sa.Column("model", sa.String(length=120), nullable=True),
    sa.Column("latency_ms", sa.Integer(), nullable=True),
    sa.Column("outcome", sa.String(length=32), nullable=False),
    sa.Column("error", sa.Text(), nullable=True),
    sa.Column("data", sa.JSON(none_as_null=True), nullable=True),
    sa.ForeignKeyConstraint(["conversation_id"], ["conversations.id"], ondelete="CASCADE"),
    sa.PrimaryKeyConstraint("id"),
    sa.UniqueConstraint("conversation_id", "turn", name="uq_touchpoint_turn"),
    sa.Index("ix_touchpoints_conversation_id", "conversation_id"),
    sa.Index("ix_touchpoints_created_at", "created_at"),
    sa.Index("ix_touchpoints_outcome", "outcome"),
    sa.Index("ix_touchpoints_stage", "stage"),
    sa.Index("ix_touchpoints_visitor_id", "visitor_id"),
)

sa.Table(
    "turn_annotations",
    META,
    sa.Column("touchpoint_id", sa.String(length=64), nullable=False),
    sa.Column("conversation_id", sa.String(length=64), nullable=False),
    sa.Column("corrected_stage", sa.String(length=40), nullable=True),
    sa.Column("tags", sa.JSON(), nullable=True),
    sa.Column("note", sa.Text(), nullable=True),
    sa.Column("updated_by", sa.String(length=120), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(["touchpoint_id"], ["touchpoints.id"], ondelete="CASCADE"),
    sa.PrimaryKeyConstraint("touchpoint_id"),
    sa.Index("ix_turn_annotations_conversation_id", "conversation_id"),
)


def upgrade() -> None:
    bind = op.get_bind()
    inspector = sa.inspect(bind)
    for table in META.sorted_tables:
        if not inspector.has_table(table.name):
            table.create(bind)
            continue
        present = {c["name"] for c in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name not in present:
                op.add_column(table.name, sa.Column(column.name, column.type, nullable=True))
        indexes = {i["name"] for i in inspector.get_indexes(table.name)}
        for index in table.indexes:
            if index.name not in indexes:
                index.create(bind)


def downgrade() -> None:
    bind = op.get_bind()
    for table in reversed(META.sorted_tables):
        table.drop(bind, checkfirst=True)
