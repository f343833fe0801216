"""Plain functions over the touchpoint store."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.store.models import OPEN, RESOLVED, SNOOZED, Conversation, Touchpoint, utcnow

VISITOR_KINDS = ("exchange", "visitor_message", "handoff")  # touchpoints that are the visitor speaking up
PROACTIVE_KINDS = ("proactive_shown", "proactive_opened", "proactive_dismissed")  # the widget's, not the visitor's
STATUS_KIND = "status"  # a touchpoint recording a status change (data: status, previous, until, by)


class ConversationNotFound(LookupError):
    """No conversation with that id belongs to this visitor."""


@dataclass
class ExchangeRecord:
    """Everything stored about one visitor turn."""

    id: str
    conversation_id: str
    visitor_id: str
    question: str
    reply: str
    stage: dict
    sources: list[dict]
    suggestions: list[str]
    page: dict | None
    identity: dict | None
    retrieval_score: float | None
    mode: str
    model: str | None
    latency_ms: int
    outcome: str = "ok"
    error: str | None = None
    kind: str = "exchange"
    data: dict | None = None
    extra_evidence: list[dict] = field(default_factory=list)
    created_at: datetime | None = None  # when the turn happened; None: now (a spooled record keeps its own time)


def get_conversation(*, session: Session, conversation_id: str, visitor_id: str | None) -> Conversation:
    """The conversation if it exists and belongs to visitor_id, else ConversationNotFound."""
    conversation = session.get(Conversation, conversation_id)
    if conversation is None or visitor_id is None or conversation.visitor_id != visitor_id:
        raise ConversationNotFound(conversation_id)
    return conversation


def recent_turns(*, session: Session, conversation_id: str, limit: int = 6) -> list[Touchpoint]:
    """The last exchanges of a conversation, oldest first."""
    rows = session.scalars(
        select(Touchpoint)
        .where(Touchpoint.conversation_id == conversation_id, Touchpoint.kind == "exchange")
        .order_by(Touchpoint.turn.desc())
        .limit(limit)
    ).all()
    return list(reversed(rows))


def record_exchange(*, session: Session, record: ExchangeRecord, attempts: int = 5) -> Touchpoint:
    """Store one exchange (creating its conversation if new) and commit it.

    A concurrent writer taking the same turn number (or creating the same conversation) makes it try again.
    """
    for _ in range(attempts - 1):
        try:
            return _add_exchange(session=session, record=record)
        except IntegrityError:
            session.rollback()
            if session.get(Touchpoint, record.id) is not None:  # this very record is already stored
                raise
    return _add_exchange(session=session, record=record)


def _add_exchange(*, session: Session, record: ExchangeRecord) -> Touchpoint:
    # the conversation row is locked (PostgreSQL) so concurrent writers take turn numbers one after the other;
    # `turns` is the last turn number (every writer of a touchpoint sets it under that lock)
    conversation = session.get(Conversation, record.conversation_id, with_for_update=True, populate_existing=True)
    now = record.created_at or utcnow()
    now = now if now.tzinfo else now.replace(tzinfo=UTC)
    if conversation is None:  # inserted with its first touchpoint in one flush (conversations first: foreign key)
        conversation = Conversation(
            id=record.conversation_id,
            visitor_id=record.visitor_id,
            created_at=now,
            updated_at=now,
            identity=record.identity,
            first_page=record.page,
            turns=0,
        )
        session.add(conversation)
    elif conversation.visitor_id != record.visitor_id:
        raise ConversationNotFound(record.conversation_id)
    turn = (conversation.turns or 0) + 1
    stage = record.stage
    touchpoint = Touchpoint(
        id=record.id,
        conversation_id=record.conversation_id,
        visitor_id=record.visitor_id,
        turn=turn,
        kind=record.kind,
        created_at=now,
        page=record.page,
        stage=stage.get("name"),
        stage_confidence=stage.get("confidence"),
        stage_evidence=stage.get("evidence", []) + record.extra_evidence,
        stage_scores=stage.get("scores"),
        previous_stage=stage.get("previous"),
        stage_changed=bool(stage.get("previous") and stage.get("previous") != stage.get("name")),
        question=record.question,
        reply=record.reply,
        sources=record.sources,
        suggestions=record.suggestions,
        retrieval_score=record.retrieval_score,
        mode=record.mode,
        model=record.model,
        latency_ms=record.latency_ms,
        outcome=record.outcome,
        error=record.error,
        data=record.data,
    )
    session.add(touchpoint)
    conversation.turns = turn
    conversation.updated_at = max(now, conversation.updated_at or now)  # a replayed old turn keeps the latest time
    if record.kind in VISITOR_KINDS:
        reopen(session=session, conversation=conversation, at=now)
    if stage.get("name"):
        conversation.stage = stage["name"]
        conversation.stage_confidence = stage.get("confidence")
    if record.identity:
        conversation.identity = record.identity
    session.commit()
    return touchpoint


def find_exchange(*, session: Session, conversation_id: str, message_id: str) -> Touchpoint | None:
    """The exchange touchpoint message_id of the conversation, or None."""
    touchpoint = session.get(Touchpoint, message_id)
    if touchpoint is None or touchpoint.conversation_id != conversation_id or touchpoint.kind != "exchange":
        return None
    return touchpoint


def conversation_touchpoints(*, session: Session, conversation_id: str) -> list[Touchpoint]:
    """Every touchpoint of a conversation (exchanges and events), in turn order."""
    return list(
        session.scalars(
            select(Touchpoint).where(Touchpoint.conversation_id == conversation_id).order_by(Touchpoint.turn)
        ).all()
    )


def add_event_touchpoint(
    *,
    session: Session,
    conversation: Conversation,
    id: str,
    kind: str,
    data: dict,
    stage: str | None,
    page: dict | None,
    created_at: datetime | None = None,
) -> Touchpoint:
    """Add a journey event as the conversation's next touchpoint (its row locked); flushed, not committed."""
    locked = session.get(Conversation, conversation.id, with_for_update=True, populate_existing=True)  # one writer
    last_turn = (locked or conversation).turns  # the last turn number, read under that lock
    now = created_at or utcnow()
    now = now if now.tzinfo else now.replace(tzinfo=UTC)
    touchpoint = Touchpoint(
        id=id,
        conversation_id=conversation.id,
        visitor_id=conversation.visitor_id,
        turn=(last_turn or 0) + 1,
        kind=kind,
        created_at=now,
        page=page,
        stage=stage or conversation.stage,
        data=data,
    )
    session.add(touchpoint)
    conversation.turns = touchpoint.turn
    conversation.updated_at = max(now, conversation.updated_at or now)
    if kind in VISITOR_KINDS:
        reopen(session=session, conversation=conversation, at=now)
    session.flush()
    return touchpoint


def status_touchpoint(
    *, session: Session, conversation: Conversation, kind: str, data: dict, at: datetime
) -> Touchpoint:
    """Add a staff-side event (status or assignee change) as the next touchpoint of a locked conversation."""
    touchpoint = Touchpoint(
        id=secrets.token_urlsafe(16),
        conversation_id=conversation.id,
        visitor_id=conversation.visitor_id,
        turn=(conversation.turns or 0) + 1,
        kind=kind,
        created_at=at,
        stage=conversation.stage,
        data=data,
    )
    session.add(touchpoint)
    conversation.turns = touchpoint.turn
    return touchpoint


def reopen(*, session: Session, conversation: Conversation, at: datetime) -> Touchpoint | None:
    """A visitor speaking up reopens a resolved or snoozed conversation (recorded as a status touchpoint by visitor)."""
    if conversation.status not in (RESOLVED, SNOOZED):
        return None
    data = {"status": OPEN, "previous": conversation.status, "until": None, "by": "visitor"}
    conversation.status, conversation.status_until = OPEN, None
    return status_touchpoint(session=session, conversation=conversation, kind=STATUS_KIND, data=data, at=at)


def _add_event(*, session: Session, **event) -> Touchpoint:
    touchpoint = add_event_touchpoint(session=session, **event)
    session.commit()
    return touchpoint


def record_event(
    *,
    session: Session,
    conversation: Conversation,
    id: str,
    kind: str,
    data: dict,
    stage: str | None = None,
    page: dict | None = None,
    attempts: int = 3,
    created_at: datetime | None = None,
) -> Touchpoint:
    """Store a journey event (feedback, handoff) as the conversation's next touchpoint and commit it."""
    event = {"conversation": conversation, "id": id, "kind": kind, "data": data, "stage": stage, "page": page}
    event["created_at"] = created_at
    for _ in range(attempts - 1):
        try:
            return _add_event(session=session, **event)
        except IntegrityError:  # a concurrent touchpoint took the turn number: take the next one
            session.rollback()
    return _add_event(session=session, **event)
