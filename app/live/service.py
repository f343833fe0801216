"""Plain functions over handoff requests and live events: request, claim, messages, hand back, close, queue, sweep.

Every change writes its touchpoint (which writes its webhook events), its live event and the request's new status
in one transaction; the caller publishes a notice on the bus after the commit (docs/live-handoff.md).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

from sqlalchemy import select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from app.chat.service import new_id
from app.config import Settings
from app.conversations.schemas import valid_email
from app.live.hours import is_open, office_zone, parse_office_hours
from app.live.models import CLOSED, LIVE, OPEN, RETURNED, UNAVAILABLE, WAITING, HandoffRequest, LiveEvent
from app.staff.inbox import effective_status
from app.store.models import RESOLVED, Conversation, Touchpoint, utcnow
from app.store.service import STATUS_KIND, add_event_touchpoint, get_conversation, status_touchpoint
from app.webhooks.events import iso

EVENT_LOCK = zlib.crc32(b"journey-guide-live-events")  # serialises live event inserts on PostgreSQL
HANDOFF_KINDS = ("handoff", "handoff_claimed", "handoff_returned", "handoff_closed", "handoff_unavailable")

T = TypeVar("T")


class NoOpenRequest(LookupError):
    """The conversation has no waiting, unavailable or live handoff request."""


class AlreadyClaimed(Exception):
    """Another staff member holds the conversation."""

    def __init__(self, agent: str | None) -> None:
        super().__init__(agent)
        self.agent = agent


class NotClaimed(Exception):
    """The caller does not hold the conversation."""

    def __init__(self, agent: str | None) -> None:
        super().__init__(agent)
        self.agent = agent


class NotAFollowUp(Exception):
    """The open request is waiting or live, not a follow-up task (only an unavailable request is one)."""

    def __init__(self, status: str) -> None:
        super().__init__(status)
        self.status = status


@dataclass(frozen=True)
class Staff:
    """The staff member acting (a token's id and name)."""

    token_id: int
    name: str


@dataclass(frozen=True)
class OfficeHours:
    """When people can join, read from JOURNEY_OFFICE_HOURS and JOURNEY_OFFICE_TIMEZONE."""

    spec: str
    zone_name: str

    def open_at(self, at: datetime) -> bool:
        """True inside office hours (always, when none are set)."""
        return is_open(parse_office_hours(self.spec), office_zone(self.zone_name), at)

    @classmethod
    def of(cls, settings: Settings) -> OfficeHours:
        """The configured hours."""
        return cls(settings.office_hours, settings.office_timezone)


# -- the transaction and its rows ------------------------------------------------------------------------------


def transaction(sessions: sessionmaker, work: Callable[[Session], T], attempts: int = 3) -> T:
    """Run `work` and commit; a concurrent touchpoint taking the same turn number makes it run again."""
    for attempt in range(attempts):
        with sessions() as session:
            try:
                result = work(session)
                session.commit()
                return result
            except IntegrityError:
                session.rollback()
                if attempt == attempts - 1:
                    raise
    raise AssertionError("unreachable")


def lock_conversation(session: Session, conversation_id: str) -> None:
    """Lock the conversation row (PostgreSQL); locks go request -> conversation -> event lock, never in a circle."""
    session.get(Conversation, conversation_id, with_for_update=True, populate_existing=True)


def add_touchpoint(
    session: Session, conversation: Conversation, kind: str, data: dict, *, page: dict | None = None
) -> Touchpoint:
    """The conversation's next touchpoint (flushed, not committed)."""
    return add_event_touchpoint(
        session=session, conversation=conversation, id=new_id(), kind=kind, data=data, stage=None, page=page
    )


def add_event(session: Session, conversation_id: str, kind: str, data: dict) -> LiveEvent:
    """Append a live event (flushed); on PostgreSQL inserts are serialised so ids commit in order."""
    lock_conversation(session, conversation_id)
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": EVENT_LOCK})
    event = LiveEvent(conversation_id=conversation_id, kind=kind, data=data, created_at=utcnow())
    session.add(event)
    session.flush()
    return event


def event_dict(event: LiveEvent) -> dict:
    """The public shape of a persisted event: its data with kind, id, conversation_id and created_at."""
    return {
        **(event.data or {}),
        "kind": event.kind,
        "id": event.id,
        "conversation_id": event.conversation_id,
        "created_at": iso(event.created_at),
    }


def open_request(session: Session, conversation_id: str) -> HandoffRequest | None:
    """The conversation's waiting, unavailable or live request, if any."""
    return session.scalar(
        select(HandoffRequest)
        .where(HandoffRequest.conversation_id == conversation_id, HandoffRequest.status.in_(OPEN))
        .order_by(HandoffRequest.id.desc())
        .limit(1)
    )


def latest_request(session: Session, conversation_id: str) -> HandoffRequest | None:
    """The conversation's newest request, whatever its status."""
    return session.scalar(
        select(HandoffRequest)
        .where(HandoffRequest.conversation_id == conversation_id)
        .order_by(HandoffRequest.id.desc())
        .limit(1)
    )


def open_status(*, session: Session, conversation_id: str) -> str | None:
    """The open request's status (waiting, unavailable, live), or None when the bot has the conversation."""
    return session.scalar(
        select(HandoffRequest.status)
        .where(HandoffRequest.conversation_id == conversation_id, HandoffRequest.status.in_(OPEN))
        .order_by(HandoffRequest.id.desc())
        .limit(1)
    )


def status_of(*, sessions: sessionmaker, conversation_id: str) -> str | None:
    """open_status in a session of its own."""
    with sessions() as session:
        return open_status(session=session, conversation_id=conversation_id)


# -- what the visitor is told ----------------------------------------------------------------------------------


def waiting_text(*, company: str, email: str | None) -> str:
    """What a visitor is told when the request goes to the team."""
    fallback = (
        f"If no one is free, they will reply by email to {email}."
        if email
        else "If no one is free, I'll ask for your email so they can reply."
    )
    return (
        f"Thanks! I've asked the {company} support team to join this chat; someone should be with you shortly. "
        f"{fallback} They can read this chat, so you won't need to repeat yourself."
    )


def unavailable_text(*, company: str, email: str | None, reason: str, settings: Settings) -> str:
    """The honest answer when no one can join now, asking for an email when none is known."""
    if reason == "office_hours":
        hours = f" (our hours are {settings.office_hours}, {settings.office_timezone} time)"
        opening = f"Sorry, no one from the {company} team can join the chat right now{hours}."
    else:
        opening = f"Sorry, everyone on the {company} team is busy and no one can join the chat right now."
    contact = (
        f" Someone will reply by email to {email} as soon as they can."
        if email
        else " Leave your email address and someone will reply as soon as they can."
    )
    return opening + contact + " You can keep asking me questions in the meantime."


# -- visitor side ----------------------------------------------------------------------------------------------


def _request_out(request: HandoffRequest, next_steps: str) -> dict:
    return {
        "conversation_id": request.conversation_id,
        "status": request.status,
        "email": request.email,
        "next_steps": next_steps,
        "event_id": request.first_event_id,
    }


def request_handoff(
    *,
    sessions: sessionmaker,
    settings: Settings,
    conversation_id: str,
    visitor_id: str,
    reason: str = "visitor",
    message: str | None = None,
    email: str | None = None,
    page: dict | None = None,
    now: datetime | None = None,
) -> dict:
    """Open a request (waiting, or unavailable outside office hours); a second one returns the open request."""
    company = settings.company_name
    at = now or utcnow()

    def work(session: Session) -> dict:
        conversation = get_conversation(session=session, conversation_id=conversation_id, visitor_id=visitor_id)
        current = open_request(session, conversation_id)
        if current is not None:  # the same request, with what this one adds (an email, more words) kept
            if email and email != current.email:
                current.email = email
                add_touchpoint(session, conversation, "handoff_contact", {"email": email, "status": current.status})
            if message:
                current.message = message
                event = add_event(session, conversation_id, "visitor.message", {"text": message})
                add_touchpoint(session, conversation, "visitor_message", {"text": message, "event_id": event.id})
            if current.status == UNAVAILABLE:
                words = unavailable_text(company=company, email=current.email, reason="timeout", settings=settings)
                last = session.scalar(
                    select(LiveEvent)
                    .where(LiveEvent.conversation_id == conversation_id, LiveEvent.kind == "handoff.unavailable")
                    .order_by(LiveEvent.id.desc())
                    .limit(1)
                )
                words = (last.data or {}).get("text", words) if last is not None else words
            else:
                words = waiting_text(company=company, email=current.email)
            return _request_out(current, words)
        known = str((conversation.identity or {}).get("email") or "").strip()
        chosen = email or (known if valid_email(known) else None)
        open_now = OfficeHours.of(settings).open_at(at)
        request = HandoffRequest(
            conversation_id=conversation_id,
            visitor_id=visitor_id,
            status=WAITING if open_now else UNAVAILABLE,
            reason=reason,
            message=message,
            email=chosen,
            page=page,
            requested_at=at,
            unavailable_notified=not open_now,
        )
        session.add(request)
        source = "visitor" if email else ("identity" if chosen else None)
        data = {"email": chosen, "email_from": source, "message": message, "reason": reason}
        add_touchpoint(session, conversation, "handoff", data, page=page)
        first = add_event(
            session, conversation_id, "handoff.requested", {"reason": reason, "message": message, "email": chosen}
        )
        request.first_event_id = first.id
        words = waiting_text(company=company, email=chosen)
        if not open_now:
            words = unavailable_text(company=company, email=chosen, reason="office_hours", settings=settings)
            notice = {"reason": "office_hours", "text": words}
            add_touchpoint(session, conversation, "handoff_unavailable", notice)
            add_event(session, conversation_id, "handoff.unavailable", notice)
        session.flush()
        return _request_out(request, words)

    return transaction(sessions, work)


def give_contact(*, sessions: sessionmaker, conversation_id: str, visitor_id: str, email: str) -> dict:
    """Store the visitor's email on the open (or latest) request; a handoff_contact touchpoint sends the webhook."""

    def work(session: Session) -> dict:
        conversation = get_conversation(session=session, conversation_id=conversation_id, visitor_id=visitor_id)
        request = open_request(session, conversation_id) or latest_request(session, conversation_id)
        if request is None:
            raise NoOpenRequest(conversation_id)
        request.email = email
        add_touchpoint(session, conversation, "handoff_contact", {"email": email, "status": request.status})
        return {"conversation_id": conversation_id, "status": request.status, "email": email}

    return transaction(sessions, work)


def visitor_message(
    *,
    sessions: sessionmaker,
    conversation_id: str,
    text: str,
    page: dict | None = None,
    record: bool,
) -> tuple[dict, str | None]:
    """Publish a visitor's message as `visitor.message` (and record a visitor_message touchpoint when `record`).

    Returns the event and the conversation's stage.
    """

    def work(session: Session) -> tuple[dict, str | None]:
        conversation = session.get(Conversation, conversation_id)
        event = add_event(session, conversation_id, "visitor.message", {"text": text})
        if record:
            add_touchpoint(session, conversation, "visitor_message", {"text": text, "event_id": event.id}, page=page)
        return event_dict(event), conversation.stage

    return transaction(sessions, work)


# -- staff side ------------------------------------------------------------------------------------------------


def claim(*, sessions: sessionmaker, conversation_id: str, staff: Staff) -> dict:
    """Take a waiting or unavailable request; the conditional UPDATE lets exactly one staff member win."""

    def work(session: Session) -> dict:
        request = open_request(session, conversation_id)
        if request is None:
            raise NoOpenRequest(conversation_id)
        if request.status == LIVE:
            if request.agent_token_id == staff.token_id:
                return {"conversation_id": conversation_id, "status": LIVE, "agent": request.agent_name}
            raise AlreadyClaimed(request.agent_name)
        won = session.execute(
            update(HandoffRequest)
            .where(HandoffRequest.id == request.id, HandoffRequest.status.in_((WAITING, UNAVAILABLE)))
            .values(status=LIVE, agent_name=staff.name, agent_token_id=staff.token_id, claimed_at=utcnow())
            .execution_options(synchronize_session=False)
        ).rowcount
        if won != 1:
            session.rollback()
            holder = session.scalar(select(HandoffRequest.agent_name).where(HandoffRequest.id == request.id))
            raise AlreadyClaimed(holder)
        conversation = session.get(Conversation, conversation_id)
        add_touchpoint(session, conversation, "handoff_claimed", {"name": staff.name, "reason": request.reason})
        event = add_event(session, conversation_id, "agent.joined", {"name": staff.name})
        return {"conversation_id": conversation_id, "status": LIVE, "agent": staff.name, "event_id": event.id}

    return transaction(sessions, work)


def _held(session: Session, conversation_id: str, staff: Staff) -> HandoffRequest:
    request = open_request(session, conversation_id)
    if request is None or request.status != LIVE or request.agent_token_id != staff.token_id:
        raise NotClaimed(request.agent_name if request is not None else None)
    return request


def agent_message(*, sessions: sessionmaker, conversation_id: str, staff: Staff, text: str) -> dict:
    """A message from the staff member holding the conversation: a human_message touchpoint and an agent.message."""

    def work(session: Session) -> dict:
        _held(session, conversation_id, staff)
        conversation = session.get(Conversation, conversation_id)
        event = add_event(session, conversation_id, "agent.message", {"name": staff.name, "text": text})
        add_touchpoint(session, conversation, "human_message", {"name": staff.name, "text": text, "event_id": event.id})
        return event_dict(event)

    return transaction(sessions, work)


def is_holder(*, sessions: sessionmaker, conversation_id: str, staff: Staff) -> bool:
    """True when `staff` holds the live conversation."""
    with sessions() as session:
        request = open_request(session, conversation_id)
        return request is not None and request.status == LIVE and request.agent_token_id == staff.token_id


def end(*, sessions: sessionmaker, conversation_id: str, staff: Staff, outcome: str) -> dict:
    """Hand the conversation back to the bot (`returned`) or close it (`closed`).

    A live conversation can only be ended by the staff member holding it; a waiting or unavailable one by anyone.
    """
    kind = "handoff.returned" if outcome == RETURNED else "handoff.closed"

    def work(session: Session) -> dict:
        request = open_request(session, conversation_id)
        if request is None:
            raise NoOpenRequest(conversation_id)
        if request.status == LIVE:
            _held(session, conversation_id, staff)
        changed = session.execute(
            update(HandoffRequest)
            .where(HandoffRequest.id == request.id, HandoffRequest.status == request.status)
            .values(status=outcome, ended_at=utcnow())
            .execution_options(synchronize_session=False)
        ).rowcount
        if changed != 1:
            raise NotClaimed(None)
        words = (
            f"{staff.name} handed this conversation back to the assistant."
            if outcome == RETURNED
            else f"{staff.name} closed this conversation. Thanks for talking to us!"
        )
        conversation = session.get(Conversation, conversation_id)
        data = {"name": staff.name, "text": words}
        touchpoint_kind = kind.replace(".", "_")
        add_touchpoint(session, conversation, touchpoint_kind, {**data, "claimed": request.status == LIVE})
        event = add_event(session, conversation_id, kind, data)
        return {"conversation_id": conversation_id, "status": outcome, "agent": staff.name, "event_id": event.id}

    return transaction(sessions, work)


def follow_up(*, sessions: sessionmaker, conversation_id: str, staff: Staff, status: str = RESOLVED) -> dict:
    """Mark a follow-up task done: close the unavailable request and set the conversation's status (resolved).

    Both are recorded with who and when: a handoff_closed touchpoint (`followed_up: true`) and a status touchpoint
    (`reason: "followed_up"`), so the transcript, the export and the webhooks show them; a new visitor message
    reopens a resolved conversation as usual.
    """

    def work(session: Session) -> dict:
        request = open_request(session, conversation_id)
        if request is None:
            raise NoOpenRequest(conversation_id)
        if request.status != UNAVAILABLE:
            raise NotAFollowUp(request.status)
        changed = session.execute(
            update(HandoffRequest)
            .where(HandoffRequest.id == request.id, HandoffRequest.status == UNAVAILABLE)
            .values(status=CLOSED, ended_at=utcnow())
            .execution_options(synchronize_session=False)
        ).rowcount
        if changed != 1:
            raise NotAFollowUp(LIVE)  # claimed a moment ago
        how = f" by email to {request.email}" if request.email else ""
        data = {"name": staff.name, "text": f"{staff.name} from our team followed up on your request{how}."}
        conversation = session.get(Conversation, conversation_id)
        add_touchpoint(session, conversation, "handoff_closed", {**data, "claimed": False, "followed_up": True})
        event = add_event(session, conversation_id, "handoff.closed", data)
        at = utcnow()
        change = {"status": status, "previous": effective_status(conversation, at), "until": None}
        change |= {"by": staff.name, "reason": "followed_up"}
        conversation.status, conversation.status_until = status, None
        status_touchpoint(session=session, conversation=conversation, kind=STATUS_KIND, data=change, at=at)
        session.flush()
        out = {"conversation_id": conversation_id, "status": CLOSED, "agent": staff.name, "event_id": event.id}
        return {**out, "conversation_status": status}

    return transaction(sessions, work)


# -- the unclaimed-request sweep -------------------------------------------------------------------------------


def sweep(*, sessions: sessionmaker, settings: Settings, now: datetime | None = None) -> list[str]:
    """Mark requests waiting longer than JOURNEY_HANDOFF_WAIT_SECONDS unavailable; return their conversations.

    Each row changes under a conditional UPDATE, so when several workers sweep at once only one announces it.
    """
    at = now or utcnow()
    cutoff = at - timedelta(seconds=settings.handoff_wait_seconds)
    with sessions() as session:
        due = session.execute(
            select(HandoffRequest.id, HandoffRequest.conversation_id).where(
                HandoffRequest.status == WAITING,
                HandoffRequest.unavailable_notified.is_(False),
                HandoffRequest.requested_at <= cutoff,
            )
        ).all()
    announced = []
    for request_id, conversation_id in due:

        def work(session: Session, request_id: int = request_id, conversation_id: str = conversation_id) -> bool:
            won = session.execute(
                update(HandoffRequest)
                .where(
                    HandoffRequest.id == request_id,
                    HandoffRequest.status == WAITING,
                    HandoffRequest.unavailable_notified.is_(False),
                )
                .values(status=UNAVAILABLE, unavailable_notified=True)
                .execution_options(synchronize_session=False)
            ).rowcount
            if won != 1:
                return False
            request = session.get(HandoffRequest, request_id)
            words = unavailable_text(
                company=settings.company_name, email=request.email, reason="timeout", settings=settings
            )
            notice = {"reason": "timeout", "text": words}
            add_touchpoint(session, session.get(Conversation, conversation_id), "handoff_unavailable", notice)
            add_event(session, conversation_id, "handoff.unavailable", notice)
            return True

        if transaction(sessions, work):
            announced.append(conversation_id)
    return announced
