"""The inbox side of a conversation: its status (open, pending, snoozed until a time, resolved) and its assignee.

Every change is kept on the conversation row (so every worker sees it) and recorded as a touchpoint of kind `status`
or `assignee` with who and when, which puts it in the transcript, the export and the webhooks (docs/inbox.md).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import and_, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.staff.models import StaffToken
from app.store.models import OPEN, SNOOZED, STATUSES, Conversation, utcnow
from app.store.service import STATUS_KIND, status_touchpoint

ASSIGNEE_KIND = "assignee"
INBOX_KINDS = (STATUS_KIND, ASSIGNEE_KIND)  # staff's bookkeeping on a conversation, not the visitor's journey
UNASSIGNED = "none"  # ?assignee=none lists the conversations nobody owns


class NotFound(LookupError):
    """No conversation with that id."""


class Invalid(ValueError):
    """A status or assignee that cannot be set (the message says why)."""


def effective_status(conversation: Conversation, now: datetime | None = None) -> str:
    """The status staff see: a snoozed conversation whose time has passed is open again."""
    status = conversation.status or OPEN
    if status == SNOOZED and conversation.status_until is not None and conversation.status_until <= (now or utcnow()):
        return OPEN
    return status


def status_of(conversation: Conversation, now: datetime | None = None) -> dict:
    """The inbox fields of a conversation, as the staff API returns them."""
    status = effective_status(conversation, now)
    return {
        "status": status,
        "until": conversation.status_until if status == SNOOZED else None,
        "assignee": conversation.assignee,
    }


def status_condition(status: str, now: datetime):
    """A WHERE clause over conversations for the status staff see (see effective_status)."""
    woke = and_(Conversation.status == SNOOZED, Conversation.status_until <= now)
    if status == OPEN:
        return or_(Conversation.status == OPEN, Conversation.status.is_(None), woke)
    if status == SNOOZED:
        return and_(Conversation.status == SNOOZED, or_(Conversation.status_until.is_(None), ~woke))
    return Conversation.status == status


def assignee_condition(assignee: str):
    """A WHERE clause over conversations owned by `assignee` (`none`: owned by nobody)."""
    if assignee == UNASSIGNED:
        return Conversation.assignee.is_(None)
    return Conversation.assignee == assignee


def staff_names(*, session: Session) -> list[str]:
    """Names of the staff members who hold an active token (who a conversation can be assigned to)."""
    rows = session.scalars(select(StaffToken.name).where(StaffToken.revoked_at.is_(None)).distinct())
    return sorted(set(rows))


def _change(session: Session, conversation_id: str, apply, attempts: int = 3) -> dict:
    """Lock the conversation, apply a change that adds its touchpoint, commit; retried when a turn number clashes."""
    for attempt in range(attempts):
        conversation = session.get(Conversation, conversation_id, with_for_update=True, populate_existing=True)
        if conversation is None:
            raise NotFound(f"no conversation {conversation_id}")
        apply(conversation)
        try:
            session.commit()
        except IntegrityError:
            session.rollback()
            if attempt == attempts - 1:
                raise
            continue
        return {"conversation_id": conversation_id, **status_of(conversation)}
    raise AssertionError("unreachable")


def set_status(*, session: Session, conversation_id: str, status: str, until: datetime | None, by: str) -> dict:
    """Set a conversation's status (snoozed needs a future `until`) and record who did it when."""
    now = utcnow()
    if status not in STATUSES:
        raise Invalid(f"status must be one of {', '.join(STATUSES)}; got {status!r}")
    if status == SNOOZED and until is None:
        raise Invalid("a snoozed conversation needs `until`: the time it comes back as open")
    if status == SNOOZED and until <= now:
        raise Invalid(f"`until` must be in the future; got {until.isoformat()}")
    if status != SNOOZED and until is not None:
        raise Invalid(f"`until` is only for status snoozed; got it with {status!r}")

    def apply(conversation: Conversation) -> None:
        data = {"status": status, "previous": effective_status(conversation, now), "until": None, "by": by}
        if until is not None:
            data["until"] = until.isoformat()
        conversation.status, conversation.status_until = status, until
        status_touchpoint(session=session, conversation=conversation, kind=STATUS_KIND, data=data, at=now)

    return _change(session, conversation_id, apply)


def set_assignee(*, session: Session, conversation_id: str, assignee: str | None, by: str) -> dict:
    """Give a conversation to a staff member (None: to nobody) and record who did it when."""
    if assignee is not None and assignee not in staff_names(session=session):
        raise Invalid(f"no staff member named {assignee!r} holds an active token")

    def apply(conversation: Conversation) -> None:
        data = {"assignee": assignee, "previous": conversation.assignee, "by": by}
        conversation.assignee = assignee
        status_touchpoint(session=session, conversation=conversation, kind=ASSIGNEE_KIND, data=data, at=utcnow())

    return _change(session, conversation_id, apply)
