"""Tables: handoff requests (who asked, who holds the conversation) and the ordered log of live events."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.store.models import Base, UTCDateTime, utcnow

WAITING, UNAVAILABLE, LIVE, CLOSED, RETURNED = "waiting", "unavailable", "live", "closed", "returned"
STATUSES = (WAITING, UNAVAILABLE, LIVE, CLOSED, RETURNED)
OPEN = (WAITING, UNAVAILABLE, LIVE)


class HandoffRequest(Base):
    """A visitor's request for a person, from `waiting` to `live` to `returned` or `closed`."""

    __tablename__ = "handoff_requests"
    __table_args__ = (Index("ix_handoff_requests_status_requested", "status", "requested_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"), index=True)
    visitor_id: Mapped[str] = mapped_column(String(128), index=True)
    status: Mapped[str] = mapped_column(String(16), default=WAITING)
    reason: Mapped[str] = mapped_column(String(32), default="visitor")
    message: Mapped[str | None] = mapped_column(Text)
    email: Mapped[str | None] = mapped_column(String(254))
    page: Mapped[dict | None] = mapped_column(JSON)
    agent_name: Mapped[str | None] = mapped_column(String(120))
    agent_token_id: Mapped[int | None] = mapped_column(Integer)
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    unavailable_notified: Mapped[bool] = mapped_column(Boolean, default=False)
    first_event_id: Mapped[int | None] = mapped_column(Integer)


class LiveEvent(Base):
    """One persisted live event; ids increase across the table, so an id is a resume point for any stream."""

    __tablename__ = "live_events"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    data: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
