"""Tables: conversations and their touchpoints (one row per exchange or journey event)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

OPEN, PENDING, SNOOZED, RESOLVED = "open", "pending", "snoozed", "resolved"
STATUSES = (OPEN, PENDING, SNOOZED, RESOLVED)  # a conversation's place in the staff inbox (docs/inbox.md)


def utcnow() -> datetime:
    """Timezone-aware now in UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """A timestamp stored in UTC and always read back timezone-aware (SQLite keeps no offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None or value.tzinfo is not None:
            return value
        return value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    """Declarative base of every table."""


class Conversation(Base):
    """A visitor's conversation and its current journey stage."""

    __tablename__ = "conversations"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    visitor_id: Mapped[str] = mapped_column(String(128), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    stage: Mapped[str | None] = mapped_column(String(40))
    stage_confidence: Mapped[float | None] = mapped_column(Float)
    turns: Mapped[int] = mapped_column(Integer, default=0)
    identity: Mapped[dict | None] = mapped_column(JSON)
    first_page: Mapped[dict | None] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default=OPEN, server_default=OPEN, index=True)
    status_until: Mapped[datetime | None] = mapped_column(UTCDateTime)  # when a snoozed conversation wakes up
    assignee: Mapped[str | None] = mapped_column(String(120), index=True)


class Touchpoint(Base):
    """One recorded exchange (question, reply, stage, sources, model, latency, outcome) or journey event (data)."""

    __tablename__ = "touchpoints"
    __table_args__ = (UniqueConstraint("conversation_id", "turn", name="uq_touchpoint_turn"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"), index=True)
    visitor_id: Mapped[str] = mapped_column(String(128), index=True)
    turn: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(32), default="exchange")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    page: Mapped[dict | None] = mapped_column(JSON)
    stage: Mapped[str | None] = mapped_column(String(40), index=True)
    stage_confidence: Mapped[float | None] = mapped_column(Float)
    stage_evidence: Mapped[list | None] = mapped_column(JSON)
    stage_scores: Mapped[dict | None] = mapped_column(JSON)
    previous_stage: Mapped[str | None] = mapped_column(String(40))
    stage_changed: Mapped[bool] = mapped_column(Boolean, default=False)
    question: Mapped[str] = mapped_column(Text, default="")
    reply: Mapped[str] = mapped_column(Text, default="")
    sources: Mapped[list | None] = mapped_column(JSON)
    suggestions: Mapped[list | None] = mapped_column(JSON)
    retrieval_score: Mapped[float | None] = mapped_column(Float)
    mode: Mapped[str] = mapped_column(String(16), default="offline")
    model: Mapped[str | None] = mapped_column(String(120))
    latency_ms: Mapped[int | None] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(32), default="ok", index=True)
    error: Mapped[str | None] = mapped_column(Text)
    data: Mapped[dict | None] = mapped_column(JSON(none_as_null=True))
