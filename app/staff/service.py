"""Staff functions over conversations: list and filter, transcripts, corrections, reviews, curated answers, erasure."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Select, and_, delete, exists, func, or_, select
from sqlalchemy.orm import Session

from app.security.redact import redact
from app.staff.customers import customer_condition
from app.staff.erasure import forget_quotes
from app.staff.inbox import assignee_condition, status_condition, status_of
from app.staff.models import ConversationReview, CuratedAnswer, StageExample, TurnAnnotation
from app.staff.replies import erase_notes, notes_of
from app.store.models import Conversation, Touchpoint, utcnow
from app.store.service import PROACTIVE_KINDS
from app.webhooks.outbox import add_erased_event, erase_visitor_events

LOW_STAGE_CONFIDENCE = 0.6
LOW_RETRIEVAL = 0.45


def as_utc(moment: datetime | None) -> datetime | None:
    """A query bound in UTC: aware times converted, naive times taken as UTC (as they are stored)."""
    if moment is None:
        return None
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


class NotFound(LookupError):
    """The staff member asked for something that does not exist."""


@dataclass(frozen=True)
class ConversationFilter:
    """What the conversation list (and the export) can be filtered by."""

    stage: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    thumbs_down: bool = False
    handoff: bool = False
    low_stage_confidence: bool = False
    low_retrieval: bool = False
    unreviewed: bool = False
    q: str | None = None
    visitor_id: str | None = None
    status: str | None = None
    assignee: str | None = None
    customer: str | None = None  # the id of a signed identity: that customer's conversations on every device


def _has(*conditions) -> exists:
    return exists().where(Touchpoint.conversation_id == Conversation.id, *conditions)


def thumbs_down_condition():
    """A feedback touchpoint rating the reply down."""
    return and_(Touchpoint.kind == "feedback", Touchpoint.data["rating"].as_string() == "down")


def filtered(query: Select, f: ConversationFilter) -> Select:
    """Apply a filter to a query over conversations."""
    if f.stage:
        query = query.where(Conversation.stage == f.stage)
    if f.since:
        query = query.where(Conversation.updated_at >= f.since)
    if f.until:
        query = query.where(Conversation.updated_at < f.until)
    if f.visitor_id:
        query = query.where(Conversation.visitor_id == f.visitor_id)
    if f.status:
        query = query.where(status_condition(f.status, utcnow()))
    if f.assignee:
        query = query.where(assignee_condition(f.assignee))
    if f.customer:
        query = query.where(customer_condition(f.customer))
    if f.thumbs_down:
        query = query.where(_has(thumbs_down_condition()))
    if f.handoff:
        query = query.where(_has(Touchpoint.kind == "handoff"))
    if f.low_stage_confidence:
        query = query.where(_has(Touchpoint.kind == "exchange", Touchpoint.stage_confidence < LOW_STAGE_CONFIDENCE))
    if f.low_retrieval:
        query = query.where(
            _has(
                Touchpoint.kind == "exchange",
                or_(Touchpoint.retrieval_score.is_(None), Touchpoint.retrieval_score < LOW_RETRIEVAL),
            )
        )
    if f.unreviewed:
        query = query.where(~exists().where(ConversationReview.conversation_id == Conversation.id))
    if f.q:
        pattern = f"%{f.q.strip()}%"
        query = query.where(_has(or_(Touchpoint.question.ilike(pattern), Touchpoint.reply.ilike(pattern))))
    return query


def list_conversations(*, session: Session, f: ConversationFilter, limit: int, offset: int) -> tuple[list[dict], int]:
    """One page of conversations (newest activity first) and the total that match."""
    spoke = _has(Touchpoint.kind.not_in(PROACTIVE_KINDS))  # not a proactive message nobody answered
    total = session.scalar(filtered(select(func.count()).select_from(Conversation), f).where(spoke)) or 0
    rows = session.scalars(
        filtered(select(Conversation), f)
        .where(spoke)
        .order_by(Conversation.updated_at.desc(), Conversation.id)
        .limit(limit)
        .offset(offset)
    ).all()
    ids = [c.id for c in rows]
    if not ids:
        return [], total
    first_questions: dict[str, str] = {}
    for conversation_id, question in session.execute(
        select(Touchpoint.conversation_id, Touchpoint.question)
        .where(Touchpoint.conversation_id.in_(ids), Touchpoint.kind == "exchange")
        .order_by(Touchpoint.turn.desc())
    ):
        first_questions[conversation_id] = question
    turns = dict(  # the visitor's turns: exchanges, not feedback, handoffs or other events
        session.execute(
            select(Touchpoint.conversation_id, func.count())
            .where(Touchpoint.conversation_id.in_(ids), Touchpoint.kind == "exchange")
            .group_by(Touchpoint.conversation_id)
        ).all()
    )
    handoffs = set(
        session.scalars(
            select(Touchpoint.conversation_id).where(Touchpoint.conversation_id.in_(ids), Touchpoint.kind == "handoff")
        ).all()
    )
    downs = set(
        session.scalars(
            select(Touchpoint.conversation_id).where(Touchpoint.conversation_id.in_(ids), thumbs_down_condition())
        ).all()
    )
    reviewed = dict(
        session.execute(
            select(ConversationReview.conversation_id, ConversationReview.reviewed_at).where(
                ConversationReview.conversation_id.in_(ids)
            )
        ).all()
    )
    items = [
        {
            "id": c.id,
            "visitor_id": c.visitor_id,
            "created_at": c.created_at,
            "updated_at": c.updated_at,
            "stage": c.stage,
            "stage_confidence": c.stage_confidence,
            "turns": turns.get(c.id, 0),
            "first_question": first_questions.get(c.id, ""),
            "handoff": c.id in handoffs,
            "thumbs_down": c.id in downs,
            "reviewed_at": reviewed.get(c.id),
            **status_of(c),
        }
        for c in rows
    ]
    return items, total


def transcript(*, session: Session, conversation_id: str) -> dict:
    """A conversation with every turn's stage, evidence, sources, latency, mode, feedback, page and annotation."""
    conversation = session.get(Conversation, conversation_id)
    if conversation is None:
        raise NotFound(f"no conversation {conversation_id}")
    touchpoints = session.scalars(
        select(Touchpoint).where(Touchpoint.conversation_id == conversation_id).order_by(Touchpoint.turn)
    ).all()
    annotations = {
        a.touchpoint_id: a
        for a in session.scalars(select(TurnAnnotation).where(TurnAnnotation.conversation_id == conversation_id))
    }
    feedback: dict[str, dict] = {}
    events = []
    for t in touchpoints:
        data = t.data or {}
        if t.kind == "feedback" and data.get("message_id"):
            feedback[data["message_id"]] = {"rating": data.get("rating"), "comment": data.get("comment")}
    turns = []
    for t in touchpoints:
        if t.kind != "exchange":
            events.append(
                {
                    "id": t.id,
                    "kind": t.kind,
                    "turn": t.turn,
                    "created_at": t.created_at,
                    "data": t.data,
                    "stage": t.stage,
                }
            )
            continue
        note = annotations.get(t.id)
        turns.append(
            {
                "id": t.id,
                "turn": t.turn,
                "created_at": t.created_at,
                "question": t.question,
                "reply": t.reply,
                "stage": {
                    "name": t.stage,
                    "confidence": t.stage_confidence,
                    "evidence": t.stage_evidence or [],
                    "scores": t.stage_scores or {},
                    "previous": t.previous_stage,
                    "changed": t.stage_changed,
                },
                "sources": t.sources or [],
                "retrieval_score": t.retrieval_score,
                "mode": t.mode,
                "model": t.model,
                "latency_ms": t.latency_ms,
                "outcome": t.outcome,
                "error": t.error,
                "page": t.page,
                "data": t.data,
                "feedback": feedback.get(t.id),
                "annotation": None
                if note is None
                else {
                    "corrected_stage": note.corrected_stage,
                    "tags": note.tags or [],
                    "note": note.note,
                    "updated_by": note.updated_by,
                    "updated_at": note.updated_at,
                },
            }
        )
    review = session.get(ConversationReview, conversation_id)
    return {
        "id": conversation.id,
        "visitor_id": conversation.visitor_id,
        "created_at": conversation.created_at,
        "updated_at": conversation.updated_at,
        "stage": conversation.stage,
        "identity": conversation.identity,
        "first_page": conversation.first_page,
        "reviewed": None if review is None else {"by": review.reviewed_by, "at": review.reviewed_at},
        **status_of(conversation),
        "notes": notes_of(session=session, conversation_id=conversation_id),
        "turns": turns,
        "events": events,
    }


def _exchange(session: Session, touchpoint_id: str) -> Touchpoint:
    touchpoint = session.get(Touchpoint, touchpoint_id)
    if touchpoint is None or touchpoint.kind != "exchange":
        raise NotFound(f"no exchange {touchpoint_id}")
    return touchpoint


def _annotation(session: Session, touchpoint: Touchpoint, by: str) -> TurnAnnotation:
    note = session.get(TurnAnnotation, touchpoint.id)
    if note is None:
        note = TurnAnnotation(touchpoint_id=touchpoint.id, conversation_id=touchpoint.conversation_id, updated_by=by)
        session.add(note)
    note.updated_by = by
    note.updated_at = utcnow()
    return note


def correct_stage(*, session: Session, touchpoint_id: str, stage: str, by: str) -> StageExample:
    """Record the right stage for a turn and keep the question as a labelled example for the detector."""
    touchpoint = _exchange(session, touchpoint_id)
    _annotation(session, touchpoint, by).corrected_stage = stage
    last_turn = session.scalar(
        select(func.max(Touchpoint.turn)).where(
            Touchpoint.conversation_id == touchpoint.conversation_id, Touchpoint.kind == "exchange"
        )
    )
    if touchpoint.turn == last_turn:  # the conversation's stage now is its last turn's, as corrected
        conversation = session.get(Conversation, touchpoint.conversation_id)
        conversation.stage, conversation.stage_confidence = stage, 1.0
    example = session.scalar(select(StageExample).where(StageExample.source_touchpoint_id == touchpoint_id))
    if example is None:
        example = StageExample(
            text=touchpoint.question,
            source_touchpoint_id=touchpoint_id,
            visitor_id=touchpoint.visitor_id,
            created_by=by,
            stage=stage,
        )
        session.add(example)
    example.stage = stage
    example.created_by = by
    example.created_at = utcnow()
    session.commit()
    return example


def annotate(*, session: Session, touchpoint_id: str, tags: list[str] | None, note: str | None, by: str) -> dict:
    """Set a turn's tags and note (None leaves a field as it is)."""
    row = _annotation(session, _exchange(session, touchpoint_id), by)
    if tags is not None:
        row.tags = sorted({t.strip() for t in tags if t.strip()})
    if note is not None:
        row.note = note
    session.commit()
    return {"touchpoint_id": touchpoint_id, "tags": row.tags or [], "note": row.note}


def mark_reviewed(*, session: Session, conversation_id: str, reviewed: bool, by: str) -> None:
    """Mark a conversation reviewed (or not)."""
    if session.get(Conversation, conversation_id) is None:
        raise NotFound(f"no conversation {conversation_id}")
    row = session.get(ConversationReview, conversation_id)
    if reviewed and row is None:
        session.add(ConversationReview(conversation_id=conversation_id, reviewed_by=by, reviewed_at=utcnow()))
    elif not reviewed and row is not None:
        session.delete(row)
    session.commit()


def learned_examples(*, session: Session) -> list[tuple[str, str]]:
    """(text, stage) of every staff correction."""
    return [(e.text, e.stage) for e in session.scalars(select(StageExample).order_by(StageExample.id))]


def learning_version(*, session: Session) -> tuple:
    """Changes whenever corrections or curated answers change (cheap to poll)."""
    examples = session.execute(select(func.count(StageExample.id), func.max(StageExample.created_at))).one()
    answers = session.execute(select(func.count(CuratedAnswer.id), func.max(CuratedAnswer.updated_at))).one()
    return (*examples, *answers)


def save_answer(
    *,
    session: Session,
    question: str,
    answer: str,
    by: str,
    touchpoint_id: str | None = None,
    answer_id: int | None = None,
) -> CuratedAnswer:
    """Create or update a curated answer."""
    visitor_id = None
    if touchpoint_id:
        visitor_id = _exchange(session, touchpoint_id).visitor_id
    row = session.get(CuratedAnswer, answer_id) if answer_id else None
    if answer_id and row is None:
        raise NotFound(f"no curated answer {answer_id}")
    if row is None:
        row = CuratedAnswer(
            created_by=by, created_at=utcnow(), source_touchpoint_id=touchpoint_id, visitor_id=visitor_id
        )
        session.add(row)
    row.question, row.answer, row.updated_at = question.strip(), answer.strip(), utcnow()
    session.commit()
    return row


def list_answers(*, session: Session) -> list[CuratedAnswer]:
    """Every curated answer, newest first."""
    return list(session.scalars(select(CuratedAnswer).order_by(CuratedAnswer.id.desc())))


def delete_answer(*, session: Session, answer_id: int) -> None:
    """Remove a curated answer."""
    row = session.get(CuratedAnswer, answer_id)
    if row is None:
        raise NotFound(f"no curated answer {answer_id}")
    session.delete(row)
    session.commit()


def detach_answers(*, session: Session, visitor_id: str) -> int:
    """Keep the curated answers staff wrote from a visitor's turns, cut loose from them (their question redacted)."""
    rows = session.scalars(select(CuratedAnswer).where(CuratedAnswer.visitor_id == visitor_id)).all()
    for row in rows:
        row.visitor_id, row.source_touchpoint_id = None, None
        row.question, row.updated_at = redact(row.question), utcnow()
    return len(rows)


def erase_visitor(*, session: Session, visitor_id: str, webhook_urls: list[str] | None = None) -> dict[str, int]:
    """Remove every stored trace of a visitor, their words quoted on other visitors' touchpoints included.

    Curated answers staff wrote from the visitor's turns stay, detached; each webhook URL gets `visitor.erased`.
    """
    conversation_ids = select(Conversation.id).where(Conversation.visitor_id == visitor_id)
    erased_conversations = list(session.scalars(conversation_ids))
    counts = {
        "quoted_elsewhere": forget_quotes(session=session, visitor_id=visitor_id),
        "annotations": session.execute(
            delete(TurnAnnotation).where(TurnAnnotation.conversation_id.in_(conversation_ids))
        ).rowcount,
        "reviews": session.execute(
            delete(ConversationReview).where(ConversationReview.conversation_id.in_(conversation_ids))
        ).rowcount,
        "notes": erase_notes(session=session, visitor_id=visitor_id),
        "stage_examples": session.execute(delete(StageExample).where(StageExample.visitor_id == visitor_id)).rowcount,
        "curated_answers_detached": detach_answers(session=session, visitor_id=visitor_id),
        "webhook_events": erase_visitor_events(session=session, visitor_id=visitor_id),
        "touchpoints": session.execute(delete(Touchpoint).where(Touchpoint.visitor_id == visitor_id)).rowcount,
        "conversations": session.execute(delete(Conversation).where(Conversation.visitor_id == visitor_id)).rowcount,
    }
    counts["erased_events_queued"] = add_erased_event(
        session=session, urls=webhook_urls or [], visitor_id=visitor_id, conversation_ids=erased_conversations
    )
    session.commit()
    return counts
