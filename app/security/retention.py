"""Retention: touchpoints older than N days are deleted, with conversations left empty."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, exists, select
from sqlalchemy.orm import Session

from app.store.models import Conversation, Touchpoint, utcnow


def purge(*, session: Session, days: int) -> dict[str, int]:
    """Delete touchpoints older than `days` and conversations that no longer have any."""
    if days < 1:
        raise ValueError("retention must be at least 1 day")
    cutoff = utcnow() - timedelta(days=days)
    touchpoints = session.execute(delete(Touchpoint).where(Touchpoint.created_at < cutoff)).rowcount
    empty = select(Conversation.id).where(
        Conversation.updated_at < cutoff, ~exists().where(Touchpoint.conversation_id == Conversation.id)
    )
    conversations = session.execute(delete(Conversation).where(Conversation.id.in_(empty))).rowcount
    session.commit()
    return {"touchpoints": touchpoints, "conversations": conversations}
