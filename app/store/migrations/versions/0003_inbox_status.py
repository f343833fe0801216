"""Inbox: a conversation's status (open, pending, snoozed until a time, resolved) and assignee (docs/inbox.md).

Idempotent like the earlier revisions: columns and indexes already present (a database made by create_all) are left
as they are. Existing conversations become `open`, unassigned.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def columns() -> list[sa.Column]:
    """The new columns of conversations (fresh objects: a Column belongs to one table)."""
    return [
        sa.Column("status", sa.String(length=16), nullable=False, server_default="open"),
        sa.Column("status_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("assignee", sa.String(length=120), nullable=True),
    ]


INDEXES = {"ix_conversations_status": "status", "ix_conversations_assignee": "assignee"}


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    present = {c["name"] for c in inspector.get_columns("conversations")}
    for column in columns():
        if column.name not in present:
            op.add_column("conversations", column)
    indexes = {i["name"] for i in inspector.get_indexes("conversations")}
    for name, column in INDEXES.items():
        if name not in indexes:
            op.create_index(name, "conversations", [column])


def downgrade() -> None:
    with op.batch_alter_table("conversations") as batch:
        for name in INDEXES:
            batch.drop_index(name)
        for column in reversed(columns()):
            batch.drop_column(column.name)
