"""The customer view: every conversation of one signed identity, across visitors and devices, and their journey."""

from __future__ import annotations

from sqlalchemy import and_, select
from sqlalchemy.orm import Session

from app.staff.inbox import NotFound
from app.store.models import Conversation, Touchpoint


def customer_condition(customer_id: str):
    """Conversations whose identity was signed by the host site (verified) with this customer id."""
    return and_(
        Conversation.identity["id"].as_string() == customer_id,
        Conversation.identity["verified"].as_boolean().is_(True),
    )


def journey(*, session: Session, customer_id: str) -> dict:
    """The customer's identity (latest), their stages over time, feedback and handoffs, from every conversation."""
    conversations = select(Conversation.id).where(customer_condition(customer_id))
    latest = session.scalar(
        select(Conversation).where(customer_condition(customer_id)).order_by(Conversation.updated_at.desc()).limit(1)
    )
    if latest is None:
        raise NotFound(f"no conversation of a signed identity with id {customer_id!r}")
    touchpoints = session.scalars(
        select(Touchpoint)
        .where(Touchpoint.conversation_id.in_(conversations), Touchpoint.kind.in_(("exchange", "feedback", "handoff")))
        .order_by(Touchpoint.created_at, Touchpoint.turn)
    ).all()
    stages: list[dict] = []
    feedback: list[dict] = []
    handoffs: list[dict] = []
    for t in touchpoints:
        data = t.data or {}
        if t.kind == "exchange" and t.stage and (not stages or stages[-1]["stage"] != t.stage):
            stages.append({"stage": t.stage, "at": t.created_at, "conversation_id": t.conversation_id})
        elif t.kind == "feedback":
            feedback.append(
                {
                    "rating": data.get("rating"),
                    "comment": data.get("comment"),
                    "at": t.created_at,
                    "conversation_id": t.conversation_id,
                }
            )
        elif t.kind == "handoff":
            handoffs.append(
                {
                    "email": data.get("email"),
                    "message": data.get("message"),
                    "at": t.created_at,
                    "conversation_id": t.conversation_id,
                }
            )
    identity = {k: v for k, v in (latest.identity or {}).items() if k not in ("signature", "expires")}
    out = {"customer_id": customer_id, "identity": identity, "journey": stages}
    return {**out, "feedback": feedback, "handoffs": handoffs}
