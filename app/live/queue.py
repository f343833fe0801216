"""Reading the live side: events after a resume point, the visitor's live state, and the staff queue."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from app.live.models import CLOSED, LIVE, RETURNED, UNAVAILABLE, WAITING, HandoffRequest, LiveEvent
from app.live.service import event_dict, latest_request
from app.store.models import Conversation, Touchpoint, utcnow
from app.store.service import get_conversation
from app.webhooks.events import iso

READ_LIMIT = 200
TRANSCRIPT_TURNS = 40
QUEUE_STATUS = {  # the request status each persisted event kind leads to (the staff stream's `queue` events)
    "handoff.requested": WAITING,
    "handoff.unavailable": UNAVAILABLE,
    "agent.joined": LIVE,
    "handoff.returned": RETURNED,
    "handoff.closed": CLOSED,
}


def read_events(
    *, sessions: sessionmaker, after: int, conversation_id: str | None = None, limit: int = READ_LIMIT
) -> list[dict]:
    """Persisted events with an id above `after` (of one conversation, or all), oldest first."""
    with sessions() as session:
        query = select(LiveEvent).where(LiveEvent.id > after)
        if conversation_id is not None:
            query = query.where(LiveEvent.conversation_id == conversation_id)
        rows = session.scalars(query.order_by(LiveEvent.id).limit(limit)).all()
        return [event_dict(r) for r in rows]


def last_event_id(*, sessions: sessionmaker) -> int:
    """The newest event id (0 when there is none)."""
    with sessions() as session:
        return session.scalar(select(func.max(LiveEvent.id))) or 0


def visitor_start(*, sessions: sessionmaker, conversation_id: str, visitor_id: str) -> int:
    """Where a visitor's stream starts without a resume point: just before the current handoff's first event.

    ConversationNotFound when the conversation is not the visitor's.
    """
    with sessions() as session:
        get_conversation(session=session, conversation_id=conversation_id, visitor_id=visitor_id)
        request = latest_request(session, conversation_id)
        if request is not None and request.first_event_id:
            return request.first_event_id - 1
        return session.scalar(select(func.max(LiveEvent.id)).where(LiveEvent.conversation_id == conversation_id)) or 0


def live_state(*, session: Session, conversation_id: str) -> dict:
    """The live status (bot when none is open), agent, the latest request's email and every live event."""
    request = latest_request(session, conversation_id)
    rows = session.scalars(
        select(LiveEvent).where(LiveEvent.conversation_id == conversation_id).order_by(LiveEvent.id).limit(1000)
    ).all()
    events = [event_dict(r) for r in rows]
    if request is None:
        return {"status": "bot", "agent": None, "email": None, "events": events}
    status = request.status if request.status != RETURNED else "bot"
    agent = request.agent_name if request.status == LIVE else None
    return {"status": status, "agent": agent, "email": request.email, "events": events}


def _transcript_entry(t: Touchpoint) -> dict:
    data = t.data or {}
    return {
        "kind": t.kind,
        "question": t.question or "",
        "reply": t.reply or "",
        "text": data.get("text") or data.get("message") or "",
        "name": data.get("name"),
        "created_at": iso(t.created_at),
    }


def queue(*, sessions: sessionmaker, statuses: tuple[str, ...], now: datetime | None = None, limit: int = 100) -> list:
    """Requests with these statuses, newest first, each with the visitor's stage, journey, page and transcript."""
    at = now or utcnow()
    out = []
    with sessions() as session:
        requests = session.scalars(
            select(HandoffRequest)
            .where(HandoffRequest.status.in_(statuses))
            .order_by(HandoffRequest.requested_at.desc(), HandoffRequest.id.desc())
            .limit(limit)
        ).all()
        for request in requests:
            conversation = session.get(Conversation, request.conversation_id)
            touchpoints = session.scalars(
                select(Touchpoint)
                .where(Touchpoint.conversation_id == request.conversation_id)
                .order_by(Touchpoint.turn.desc())
                .limit(TRANSCRIPT_TURNS)
            ).all()[::-1]
            journey: list[str] = []
            for stage in session.scalars(
                select(Touchpoint.stage)
                .where(Touchpoint.conversation_id == request.conversation_id, Touchpoint.kind == "exchange")
                .order_by(Touchpoint.turn)
            ):
                if stage and (not journey or journey[-1] != stage):
                    journey.append(stage)
            said = [t for t in touchpoints if t.kind in ("exchange", "visitor_message")]
            last = said[-1] if said else None
            page = request.page or next((t.page for t in reversed(touchpoints) if t.page), None)
            until = request.claimed_at if request.status != WAITING and request.claimed_at else at
            if request.status in (CLOSED, RETURNED) and request.ended_at and not request.claimed_at:
                until = request.ended_at
            out.append(
                {
                    "conversation_id": request.conversation_id,
                    "visitor_id": request.visitor_id,
                    "status": request.status,
                    "reason": request.reason,
                    "requested_at": iso(request.requested_at),
                    "waiting_seconds": max(0, int((until - request.requested_at).total_seconds())),
                    "agent": request.agent_name,
                    "email": request.email,
                    "message": request.message,
                    "stage": conversation.stage if conversation else None,
                    "journey": journey,
                    "page": page,
                    "last_message": (last.question or (last.data or {}).get("text", "")) if last else request.message,
                    "transcript": [_transcript_entry(t) for t in touchpoints],
                }
            )
    return out
