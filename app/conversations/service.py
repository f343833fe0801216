"""Transcript, feedback and handoff of a visitor's own conversation."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from app.chat.service import new_id
from app.conversations.schemas import FeedbackIn, HandoffIn, valid_email
from app.store.models import Touchpoint
from app.store.service import conversation_touchpoints, find_exchange, get_conversation, record_event


class MessageNotFound(LookupError):
    """The message id is not a reply of this conversation."""


class EmailRequired(ValueError):
    """An anonymous visitor asked for a person without giving an email."""


def give_feedback(*, sessions: sessionmaker[Session], conversation_id: str, body: FeedbackIn) -> dict:
    """Store a thumbs up or down on one reply as a feedback touchpoint."""
    with sessions() as session:
        conversation = get_conversation(session=session, conversation_id=conversation_id, visitor_id=body.visitor_id)
        exchange = find_exchange(session=session, conversation_id=conversation_id, message_id=body.message_id)
        if exchange is None:
            raise MessageNotFound(body.message_id)
        data = {"rating": body.rating, "message_id": body.message_id, "comment": body.comment}
        record_event(
            session=session, conversation=conversation, id=new_id(), kind="feedback", data=data, stage=exchange.stage
        )
    return {"conversation_id": conversation_id, "message_id": body.message_id, "rating": body.rating}


def next_steps(*, company: str, email: str) -> str:
    """What the visitor is told after a handoff."""
    return (
        f"Thanks! This conversation is now with the {company} support team. A person will reply by email "
        f"to {email}. They can read this chat, so you won't need to repeat yourself. "
        "You can keep asking me questions in the meantime."
    )


def hand_off(*, sessions: sessionmaker[Session], conversation_id: str, body: HandoffIn, company: str) -> dict:
    """Record a handoff touchpoint; the email is the visitor's, or a known visitor's identity email."""
    with sessions() as session:
        conversation = get_conversation(session=session, conversation_id=conversation_id, visitor_id=body.visitor_id)
        known = str((conversation.identity or {}).get("email") or "").strip()
        email = body.email or (known if valid_email(known) else None)
        if email is None:
            raise EmailRequired("an email address is needed so the support team can reply")
        data = {
            "email": email,
            "email_from": "visitor" if body.email else "identity",
            "message": body.message,
        }
        page = body.page.as_record() if body.page else None
        record_event(session=session, conversation=conversation, id=new_id(), kind="handoff", data=data, page=page)
    return {"conversation_id": conversation_id, "email": email, "next_steps": next_steps(company=company, email=email)}


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
    }
