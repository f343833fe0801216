"""Transcript and feedback of a visitor's own conversation (handoff requests: app/live/service.py)."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from app.chat.service import new_id
from app.conversations.schemas import FeedbackIn
from app.live.queue import live_state
from app.store.models import Touchpoint
from app.store.service import conversation_touchpoints, find_exchange, get_conversation, record_event
from app.store.spool import DATABASE_DOWN, EventRecord, spool_of


class MessageNotFound(LookupError):
    """The message id is not a reply of this conversation."""


def give_feedback(*, sessions: sessionmaker[Session], conversation_id: str, body: FeedbackIn) -> dict:
    """Store a thumbs up or down on one reply as a feedback touchpoint (spooled while the database is down)."""
    data = {"rating": body.rating, "message_id": body.message_id, "comment": body.comment}
    try:
        with sessions() as session:
            conversation = get_conversation(
                session=session, conversation_id=conversation_id, visitor_id=body.visitor_id
            )
            exchange = find_exchange(session=session, conversation_id=conversation_id, message_id=body.message_id)
            if exchange is None:
                raise MessageNotFound(body.message_id)
            event = {"id": new_id(), "kind": "feedback", "data": data, "stage": exchange.stage}
            record_event(session=session, conversation=conversation, **event)
    except DATABASE_DOWN:  # checked when replayed (app/store/spool.py); without a spool: 503
        if (spool := spool_of(sessions)) is None:
            raise
        event = EventRecord(new_id(), conversation_id, body.visitor_id, "feedback", data, about=body.message_id)
        spool.append(event)
    return {"conversation_id": conversation_id, "message_id": body.message_id, "rating": body.rating}


def _turn(exchange: Touchpoint, feedback: dict[str, str]) -> dict:
    return {
        "message_id": exchange.id,
        "question": exchange.question,
        "reply": exchange.reply,
        "stage": exchange.stage,
        "sources": exchange.sources or [],
        "suggestions": exchange.suggestions or [],
        "feedback": feedback.get(exchange.id),
        "outcome": exchange.outcome,
        "created_at": exchange.created_at,
    }


def read_transcript(*, sessions: sessionmaker[Session], conversation_id: str, visitor_id: str) -> dict:
    """The visitor's conversation: exchanges with their latest feedback, and the latest handoff."""
    with sessions() as session:
        conversation = get_conversation(session=session, conversation_id=conversation_id, visitor_id=visitor_id)
        touchpoints = conversation_touchpoints(session=session, conversation_id=conversation_id)
        live = live_state(session=session, conversation_id=conversation_id)
    feedback: dict[str, str] = {}
    handoff = None
    for t in touchpoints:
        data = t.data or {}
        if t.kind == "feedback" and data.get("message_id"):
            feedback[data["message_id"]] = data.get("rating")
        elif t.kind == "handoff":
            handoff = {"email": data.get("email", ""), "created_at": t.created_at}
    return {
        "conversation_id": conversation.id,
        "visitor_id": conversation.visitor_id,
        "stage": conversation.stage,
        "turns": [_turn(t, feedback) for t in touchpoints if t.kind == "exchange"],
        "handoff": handoff,
        "live": live,
    }
