"""Canned replies and internal conversation notes (docs/inbox.md).

Idempotent like the earlier revisions: tables already present (a database made by create_all) are left as they are.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

META = sa.MetaData()

sa.Table("conversations", META, sa.Column("id", sa.String(length=64), primary_key=True))

sa.Table(
    "canned_replies",
    META,
    sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
    sa.Column("title", sa.String(length=80), nullable=False),
    sa.Column("text", sa.Text(), nullable=False),
    sa.Column("created_by", sa.String(length=120), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint("id"),
    sa.UniqueConstraint("title"),
)

sa.Table(
    "conversation_notes",
    META,
    sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
    sa.Column("conversation_id", sa.String(length=64), nullable=False),
    sa.Column("visitor_id", sa.String(length=128), nullable=False),
    sa.Column("text", sa.Text(), nullable=False),
    sa.Column("author", sa.String(length=120), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(["conversation_id"], ["conversations.id"], ondelete="CASCADE"),
    sa.PrimaryKeyConstraint("id"),
    sa.Index("ix_conversation_notes_conversation_id", "conversation_id"),
    sa.Index("ix_conversation_notes_visitor_id", "visitor_id"),
)

NEW = ("canned_replies", "conversation_notes")


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
