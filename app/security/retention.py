"""Retention: touchpoints older than N days are deleted, with conversations left empty."""

from __future__ import annotations

import logging
from datetime import timedelta

import anyio
from anyio import to_thread
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


def _purge_once(sessions, days: int) -> dict[str, int]:
    with sessions() as session:
        return purge(session=session, days=days)


async def retention_loop(sessions, days: int, every_seconds: float = 3600.0) -> None:
    """Purge every `every_seconds` while the server runs (cancelled at shutdown)."""
    log = logging.getLogger(__name__)
    while True:
        try:
            counts = await to_thread.run_sync(_purge_once, sessions, days)
            if counts["touchpoints"]:
                log.info("retention: deleted %(touchpoints)d touchpoints, %(conversations)d conversations", counts)
        except Exception:  # noqa: BLE001 - a failed purge is retried at the next tick, the server keeps serving
            log.exception("retention purge failed")
        await anyio.sleep(every_seconds)
