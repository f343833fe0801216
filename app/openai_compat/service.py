"""Which conversation an OpenAI-style request continues."""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.openai_compat.schemas import CompletionRequest
from app.store.models import Conversation
from app.store.spool import DATABASE_DOWN

log = logging.getLogger(__name__)


def latest_conversation(*, session: Session, visitor_id: str) -> str | None:
    """The id of the visitor's most recently active conversation, if any."""
    return session.scalar(
        select(Conversation.id)
        .where(Conversation.visitor_id == visitor_id)
        .order_by(Conversation.updated_at.desc())
        .limit(1)
    )


def conversation_for(*, sessions: sessionmaker, body: CompletionRequest) -> str | None:
    """metadata.conversation_id; else, for a `user` whose request carries earlier turns, their latest conversation."""
    given = (body.metadata or {}).get("conversation_id")
    if given:
        return given
    visitor_id = body.visitor_id()
    if visitor_id and body.continues():
        try:
            with sessions() as session:
                return latest_conversation(session=session, visitor_id=visitor_id)
        except DATABASE_DOWN:  # the turn is answered and spooled as a new conversation rather than refused
            log.warning("database unavailable: %s's turn starts a new conversation", visitor_id)
    return None
