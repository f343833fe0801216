"""Live handoff: handoff_requests and live_events (docs/live-handoff.md).

Idempotent like the baseline: a database made by create_all with these tables already present is left as it is.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

META = sa.MetaData()

sa.Table("conversations", META, sa.Column("id", sa.String(length=64), primary_key=True))

sa.Table(
    "handoff_requests",
    META,
    sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
    sa.Column("conversation_id", sa.String(length=64), nullable=False),
    sa.Column("visitor_id", sa.String(length=128), nullable=False),
    sa.Column("status", sa.String(length=16), nullable=False),
    sa.Column("reason", sa.String(length=32), nullable=False),
    sa.Column("message", sa.Text(), nullable=True),
    sa.Column("email", sa.String(length=254), nullable=True),
    sa.Column("page", sa.JSON(), nullable=True),
    sa.Column("agent_name", sa.String(length=120), nullable=True),
    sa.Column("agent_token_id", sa.Integer(), nullable=True),
    sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("unavailable_notified", sa.Boolean(), nullable=False),
    sa.Column("first_event_id", sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(["conversation_id"], ["conversations.id"], ondelete="CASCADE"),
    sa.PrimaryKeyConstraint("id"),
    sa.Index("ix_handoff_requests_conversation_id", "conversation_id"),
    sa.Index("ix_handoff_requests_visitor_id", "visitor_id"),
    sa.Index("ix_handoff_requests_status_requested", "status", "requested_at"),
)

sa.Table(
    "live_events",
    META,
    sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
    sa.Column("conversation_id", sa.String(length=64), nullable=False),
    sa.Column("kind", sa.String(length=32), nullable=False),
    sa.Column("data", sa.JSON(), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(["conversation_id"], ["conversations.id"], ondelete="CASCADE"),
    sa.PrimaryKeyConstraint("id"),
    sa.Index("ix_live_events_conversation_id", "conversation_id"),
    sqlite_autoincrement=True,
)

NEW = ("handoff_requests", "live_events")


def upgrade() -> None:
    bind = op.get_bind()
    inspector = sa.inspect(bind)
    for name in NEW:
        if not inspector.has_table(name):
            META.tables[name].create(bind)


def downgrade() -> None:
    bind = op.get_bind()
    for name in reversed(NEW):
        META.tables[name].drop(bind, checkfirst=True)
