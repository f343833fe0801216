"""Webhook event payloads (version 1, described by docs/webhook-event.schema.json)."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

from app.store.models import Conversation, Touchpoint, utcnow

VERSION = 1
TOUCHPOINT_CREATED = "touchpoint.created"
STAGE_TRANSITION = "stage.transition"
HANDOFF_EVENTS = {  # touchpoint kind -> live handoff event type (docs/live-handoff.md)
    "handoff": "handoff.requested",
    "handoff_unavailable": "handoff.unavailable",
    "handoff_contact": "handoff.contact",
    "handoff_claimed": "handoff.claimed",
    "handoff_closed": "handoff.closed",
}
INBOX_EVENTS = {  # touchpoint kind -> inbox event type (docs/inbox.md)
    "status": "conversation.status",
    "assignee": "conversation.assigned",
}
VISITOR_ERASED = "visitor.erased"
EVENT_TYPES = (
    TOUCHPOINT_CREATED,
    STAGE_TRANSITION,
    *HANDOFF_EVENTS.values(),
    *INBOX_EVENTS.values(),
    VISITOR_ERASED,
)


def event_id(event_type: str, touchpoint_id: str) -> str:
    """The idempotency key: the same touchpoint always gives the same id for an event type."""
    return "evt_" + hashlib.sha256(f"{event_type}:{touchpoint_id}".encode()).hexdigest()[:24]


def iso(value: datetime | None) -> str:
    """RFC 3339 in UTC (naive values, as SQLite returns them, are taken as UTC)."""
    value = value or utcnow()
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _identity(conversation: Conversation | None) -> dict | None:
    return dict(conversation.identity) if conversation is not None and conversation.identity else None


def touchpoint_data(touchpoint: Touchpoint, conversation: Conversation | None) -> dict:
    """What a receiver learns about one touchpoint (an exchange, feedback or a handoff)."""
    t = touchpoint
    return {
        "touchpoint_id": t.id,
        "kind": t.kind or "exchange",
        "conversation_id": t.conversation_id,
        "visitor_id": t.visitor_id,
        "turn": t.turn,
        "occurred_at": iso(t.created_at),
        "identity": _identity(conversation),
        "page": t.page,
        "stage": {
            "name": t.stage,
            "confidence": t.stage_confidence,
            "previous": t.previous_stage,
            "changed": bool(t.stage_changed),
        },
        "question": t.question or "",
        "reply": t.reply or "",
        "sources": t.sources or [],
        "suggestions": t.suggestions or [],
        "mode": t.mode,
        "model": t.model,
        "latency_ms": t.latency_ms,
        "outcome": t.outcome or "ok",
        "error": t.error,
        "data": getattr(t, "data", None),
    }


def _subject(t: Touchpoint, conversation: Conversation | None) -> dict:
    """The fields that say which touchpoint of which visitor an event is about, and when."""
    return {
        "touchpoint_id": t.id,
        "conversation_id": t.conversation_id,
        "visitor_id": t.visitor_id,
        "turn": t.turn,
        "occurred_at": iso(t.created_at),
        "identity": _identity(conversation),
    }


def transition_data(touchpoint: Touchpoint, conversation: Conversation | None) -> dict:
    """A conversation moving from one journey stage to another on this touchpoint."""
    t = touchpoint
    return {
        **_subject(t, conversation),
        "from": t.previous_stage,
        "to": t.stage,
        "confidence": t.stage_confidence,
        "page": t.page,
    }


def handoff_data(touchpoint: Touchpoint, conversation: Conversation | None) -> dict:
    """A handoff changing state: requested, unavailable (with what the visitor was told), contact, claimed, closed."""
    t = touchpoint
    data = t.data or {}
    return {
        **_subject(t, conversation),
        "page": t.page,
        "stage": t.stage,
        "reason": data.get("reason"),
        "email": data.get("email"),
        "message": data.get("message"),
        "agent": data.get("name"),
        "text": data.get("text"),
    }


def inbox_data(touchpoint: Touchpoint, conversation: Conversation | None) -> dict:
    """A conversation's status or assignee changing: the new and previous value, and who changed it."""
    data = touchpoint.data or {}
    return {
        **_subject(touchpoint, conversation),
        "status": data.get("status"),
        "until": data.get("until"),
        "assignee": data.get("assignee"),
        "previous": data.get("previous"),
        "by": data.get("by"),
    }


def events_for(touchpoint: Touchpoint, conversation: Conversation | None) -> list[tuple[str, str, str]]:
    """(event id, type, JSON body) of every event a new touchpoint produces."""
    made = [(TOUCHPOINT_CREATED, touchpoint_data(touchpoint, conversation))]
    if touchpoint.stage_changed and touchpoint.previous_stage and touchpoint.stage:
        made.append((STAGE_TRANSITION, transition_data(touchpoint, conversation)))
    if touchpoint.kind in HANDOFF_EVENTS:
        made.append((HANDOFF_EVENTS[touchpoint.kind], handoff_data(touchpoint, conversation)))
    if touchpoint.kind in INBOX_EVENTS:
        made.append((INBOX_EVENTS[touchpoint.kind], inbox_data(touchpoint, conversation)))
    out = []
    for event_type, data in made:
        key = event_id(event_type, touchpoint.id)
        envelope = {"id": key, "type": event_type, "version": VERSION, "created_at": iso(None), "data": data}
        out.append((key, event_type, json.dumps(envelope, ensure_ascii=False, separators=(",", ":"), default=str)))
    return out


def erased_event(visitor_id: str, conversation_ids: list[str]) -> tuple[str, str, str]:
    """(event id, type, JSON body) of a visitor's erasure: receivers delete what they keep about them."""
    erased_at = iso(None)
    key = event_id(VISITOR_ERASED, f"{visitor_id}@{erased_at}")
    data = {"visitor_id": visitor_id, "conversation_ids": sorted(conversation_ids), "erased_at": erased_at}
    envelope = {"id": key, "type": VISITOR_ERASED, "version": VERSION, "created_at": erased_at, "data": data}
    return key, VISITOR_ERASED, json.dumps(envelope, ensure_ascii=False, separators=(",", ":"))
