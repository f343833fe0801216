"""Canned replies (saved texts for live chats) and internal notes on conversations (staff only, never visitors)."""

from __future__ import annotations

from sqlalchemy import delete, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.staff.inbox import Invalid, NotFound
from app.staff.models import CannedReply, ConversationNote
from app.store.models import Conversation, utcnow
from app.webhooks.events import iso


def canned_dict(row: CannedReply) -> dict:
    """A canned reply as the staff API returns it."""
    return {
        "id": row.id,
        "title": row.title,
        "text": row.text,
        "created_by": row.created_by,
        "updated_at": row.updated_at,
    }


def list_canned(*, session: Session, q: str | None = None) -> list[dict]:
    """Canned replies by title, those whose title or text contains `q` when given."""
    query = select(CannedReply).order_by(CannedReply.title)
    if q:
        pattern = f"%{q.strip()}%"
        query = query.where(or_(CannedReply.title.ilike(pattern), CannedReply.text.ilike(pattern)))
    return [canned_dict(r) for r in session.scalars(query)]


def save_canned(*, session: Session, title: str, text: str, by: str, canned_id: int | None = None) -> dict:
    """Create (or, with canned_id, change) a canned reply; titles are unique."""
    row = session.get(CannedReply, canned_id) if canned_id else None
    if canned_id and row is None:
        raise NotFound(f"no canned reply {canned_id}")
    if row is None:
        row = CannedReply(created_by=by, created_at=utcnow())
        session.add(row)
    row.title, row.text, row.updated_at = title.strip(), text.strip(), utcnow()
    try:
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise Invalid(f"a canned reply titled {title.strip()!r} already exists") from exc
    return canned_dict(row)


def delete_canned(*, session: Session, canned_id: int) -> None:
    """Remove a canned reply."""
    row = session.get(CannedReply, canned_id)
    if row is None:
        raise NotFound(f"no canned reply {canned_id}")
    session.delete(row)
    session.commit()


def note_dict(row: ConversationNote) -> dict:
    """An internal note as the staff API returns it."""
    return {"id": row.id, "text": row.text, "author": row.author, "created_at": row.created_at}


def add_note(*, session: Session, conversation_id: str, text: str, by: str) -> dict:
    """Leave an internal note on a conversation."""
    conversation = session.get(Conversation, conversation_id)
    if conversation is None:
        raise NotFound(f"no conversation {conversation_id}")
    row = ConversationNote(
        conversation_id=conversation_id, visitor_id=conversation.visitor_id, text=text, author=by, created_at=utcnow()
    )
    session.add(row)
    session.commit()
    return note_dict(row)


def note_json(note: dict) -> dict:
    """A note as JSON for the live bus (its time as ISO 8601)."""
    return {**note, "created_at": iso(note["created_at"])}


def conversation_notes(*, session: Session, conversation_id: str) -> list[dict]:
    """The notes of a conversation that exists (NotFound otherwise), oldest first."""
    if session.get(Conversation, conversation_id) is None:
        raise NotFound(f"no conversation {conversation_id}")
    return notes_of(session=session, conversation_id=conversation_id)


def notes_of(*, session: Session, conversation_id: str) -> list[dict]:
    """A conversation's internal notes, oldest first."""
    rows = session.scalars(
        select(ConversationNote)
        .where(ConversationNote.conversation_id == conversation_id)
        .order_by(ConversationNote.created_at, ConversationNote.id)
    )
    return [note_dict(r) for r in rows]


def erase_notes(*, session: Session, visitor_id: str) -> int:
    """Delete the notes on a visitor's conversations (part of erasing the visitor; not committed)."""
    return session.execute(delete(ConversationNote).where(ConversationNote.visitor_id == visitor_id)).rowcount
