"""Which conversation an OpenAI-style request continues."""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.openai_compat.schemas import CompletionRequest
from app.store.models import Conversation
from app.store.spool import DATABASE_DOWN

log = logging.getLogger(__name__)


LOOKBACK = 50  # a visitor's most recent conversations searched for one their proven caller started


def latest_proven_conversation(*, session: Session, visitor_id: str) -> str | None:
    """The visitor's most recently active conversation that a proven caller started (verified identity `id`).

    Conversations someone else started under the same visitor id (any caller may name any visitor id on /v1/chat)
    are passed over, so they cannot be slipped into the visitor's history.
    """
    rows = session.execute(
        select(Conversation.id, Conversation.identity)
        .where(Conversation.visitor_id == visitor_id)
        .order_by(Conversation.updated_at.desc())
        .limit(LOOKBACK)
    )
    for conversation_id, identity in rows:
        if identity and identity.get("verified") is True and identity.get("id") == visitor_id:
            return conversation_id
    return None


def conversation_for(*, sessions: sessionmaker, body: CompletionRequest, proven: bool) -> str | None:
    """metadata.conversation_id; else, for a proven `user` whose request carries earlier turns, their latest one.

    A caller that proved nothing (no API key, no signed identity) never gets a conversation by naming a `user`.
    """
    given = (body.metadata or {}).get("conversation_id")
    if given:
        return given
    visitor_id = body.visitor_id()
    if proven and visitor_id and body.continues():
        try:
            with sessions() as session:
                return latest_proven_conversation(session=session, visitor_id=visitor_id)
        except DATABASE_DOWN:  # the turn is answered and spooled as a new conversation rather than refused
            log.warning("database unavailable: %s's turn starts a new conversation", visitor_id)
    return None
