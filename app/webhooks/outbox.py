"""The outbox: rows added with each new touchpoint in its own transaction, claimed and settled by senders."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, delete, event, func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.store.models import Conversation, Touchpoint, utcnow
from app.webhooks.events import erased_event, events_for
from app.webhooks.models import DELIVERED, FAILED, PENDING, OutboxEvent

NEW_EVENTS = "journey_webhook_new_events"


class WebhookConfigError(ValueError):
    """Webhook settings that must not be started with."""


def webhook_urls(settings: Settings) -> list[str]:
    """JOURNEY_WEBHOOK_URLS as a list, checked: http(s) URLs, and a secret of 16+ characters to sign with."""
    urls = [u.strip() for u in settings.webhook_urls.split(",") if u.strip()]
    for url in urls:
        if not url.startswith(("http://", "https://")):
            raise WebhookConfigError(f"JOURNEY_WEBHOOK_URLS: not an http(s) URL: {url!r}")
    if urls and len(settings.webhook_secret or "") < 16:
        raise WebhookConfigError(
            "JOURNEY_WEBHOOK_URLS is set but JOURNEY_WEBHOOK_SECRET is missing or shorter than 16 characters: "
            "webhooks are always signed"
        )
    return urls


def install_outbox(sessions: sessionmaker, settings: Settings) -> None:
    """Make every session of `sessions` add outbox rows for each new touchpoint, in the same flush."""
    urls = webhook_urls(settings)
    if not urls:
        return

    def before_flush(session: Session, _context, _instances) -> None:
        touchpoints = [o for o in session.new if isinstance(o, Touchpoint)]
        if not touchpoints:
            return
        now = utcnow()
        new_conversations = {o.id: o for o in session.new if isinstance(o, Conversation)}  # flushed with them
        with session.no_autoflush:
            for touchpoint in touchpoints:
                conversation = new_conversations.get(touchpoint.conversation_id) or session.get(
                    Conversation, touchpoint.conversation_id
                )
                for key, event_type, body in events_for(touchpoint, conversation):
                    session.add_all(_pending(key, event_type, body, urls, touchpoint.visitor_id, now))
        session.info[NEW_EVENTS] = True

    event.listen(sessions, "before_flush", before_flush)


@dataclass
class Claimed:
    """Rows one sender holds until `until`, under its `token`."""

    token: str
    until: datetime
    rows: list[OutboxEvent]


def claim(*, session: Session, url: str, limit: int, worker: str, lease: float) -> Claimed:
    """Lease up to `limit` due rows for `url`, oldest first; a row leased by another sender is never taken."""
    now = utcnow()
    token = f"{worker}:{secrets.token_hex(6)}"
    until = now + timedelta(seconds=lease)
    claimable = (
        OutboxEvent.status == PENDING,
        OutboxEvent.url == url,
        OutboxEvent.next_attempt_at <= now,
        or_(OutboxEvent.locked_until.is_(None), OutboxEvent.locked_until < now),
    )
    # PostgreSQL: rows another sender is claiming right now are skipped, not waited for (SQLite ignores this)
    due = select(OutboxEvent.id).where(*claimable).order_by(OutboxEvent.id).limit(limit)
    due = due.with_for_update(skip_locked=True)
    session.execute(
        update(OutboxEvent)
        .where(OutboxEvent.id.in_(due.scalar_subquery()), *claimable)
        .values(locked_by=token, locked_until=until)
        .execution_options(synchronize_session=False)
    )
    session.commit()
    rows = session.scalars(select(OutboxEvent).where(OutboxEvent.locked_by == token).order_by(OutboxEvent.id)).all()
    return Claimed(token=token, until=until, rows=list(rows))


@dataclass
class FailedAttempt:
    """A delivery attempt that did not get a 2xx: when to retry, or give up (`dead`, the event is too old)."""

    row_id: int
    status: int | None
    error: str
    retry_at: datetime
    dead: bool


def settle(
    *, session: Session, token: str, delivered: list[tuple[int, int]], failed: FailedAttempt | None = None
) -> int:
    """Record a batch in one transaction: (row id, HTTP status) delivered, one failed attempt, the rest released.

    Only rows still leased under `token` change; returns how many delivered rows were recorded.
    """
    now = utcnow()
    recorded = 0
    for status in {code for _, code in delivered}:
        ids = [row_id for row_id, code in delivered if code == status]
        result = session.execute(
            update(OutboxEvent)
            .where(OutboxEvent.id.in_(ids), OutboxEvent.locked_by == token)
            .values(
                status=DELIVERED,
                attempts=OutboxEvent.attempts + 1,
                delivered_at=now,
                last_status=status,
                last_error=None,
                locked_by=None,
                locked_until=None,
            )
            .execution_options(synchronize_session=False)
        )
        recorded += result.rowcount or 0
    if failed is not None:
        session.execute(
            update(OutboxEvent)
            .where(OutboxEvent.id == failed.row_id, OutboxEvent.locked_by == token)
            .values(
                status=FAILED if failed.dead else PENDING,
                attempts=OutboxEvent.attempts + 1,
                next_attempt_at=failed.retry_at,
                last_status=failed.status,
                last_error=failed.error[:500],
                locked_by=None,
                locked_until=None,
            )
            .execution_options(synchronize_session=False)
        )
    session.execute(
        update(OutboxEvent)
        .where(OutboxEvent.locked_by == token, OutboxEvent.status == PENDING)
        .values(locked_by=None, locked_until=None)
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return recorded


def counts(*, session: Session, urls: list[str] | None = None) -> dict[str, int]:
    """Rows per status (pending is the backlog), for the configured URLs when given."""
    query = select(OutboxEvent.status, func.count()).group_by(OutboxEvent.status)
    if urls is not None:
        query = query.where(OutboxEvent.url.in_(urls))
    found = dict(session.execute(query).all())
    return {s: int(found.get(s, 0)) for s in (PENDING, DELIVERED, FAILED)}


def purge(*, session: Session, older_than: timedelta) -> int:
    """Delete events delivered, or given up, longer ago than the retention; return how many."""
    cutoff = utcnow() - older_than
    result = session.execute(
        delete(OutboxEvent).where(
            or_(
                and_(OutboxEvent.status == DELIVERED, OutboxEvent.delivered_at < cutoff),
                and_(OutboxEvent.status == FAILED, OutboxEvent.next_attempt_at < cutoff),
            )
        )
    )
    session.commit()
    return result.rowcount or 0


def purge_orphans(*, session: Session) -> int:
    """Delete events of visitors who have no touchpoint left (erased, or past retention); return how many."""
    remaining = select(Touchpoint.id).where(Touchpoint.visitor_id == OutboxEvent.visitor_id).exists()
    result = session.execute(delete(OutboxEvent).where(OutboxEvent.visitor_id.is_not(None), ~remaining))
    session.commit()
    return result.rowcount or 0


def retry_failed(*, session: Session) -> int:
    """Put given-up events back in the queue (their age counts from now); return how many."""
    result = session.execute(
        update(OutboxEvent)
        .where(OutboxEvent.status == FAILED)
        .values(status=PENDING, next_attempt_at=utcnow(), created_at=utcnow(), attempts=0)
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return result.rowcount or 0


def _pending(
    key: str, event_type: str, body: str, urls: list[str], visitor_id: str | None, now: datetime
) -> list[OutboxEvent]:
    """One undelivered outbox row of the event per webhook URL, due now."""
    return [
        OutboxEvent(
            event_id=key,
            event_type=event_type,
            url=url,
            body=body,
            visitor_id=visitor_id,
            status=PENDING,
            attempts=0,
            created_at=now,
            next_attempt_at=now,
        )
        for url in urls
    ]


def erase_visitor_events(*, session: Session, visitor_id: str) -> int:
    """Delete a visitor's events, delivered or not (for erasure); the caller commits."""
    result = session.execute(delete(OutboxEvent).where(OutboxEvent.visitor_id == visitor_id))
    return result.rowcount or 0


def add_erased_event(*, session: Session, urls: list[str], visitor_id: str, conversation_ids: list[str]) -> int:
    """Queue a `visitor.erased` event for each URL; the caller commits (with the erasure).

    The row has no visitor_id, so erasure and the orphan purge leave it to be delivered; its body names the visitor.
    """
    key, event_type, body = erased_event(visitor_id, conversation_ids)
    session.add_all(_pending(key, event_type, body, urls, None, utcnow()))
    if urls:
        session.info[NEW_EVENTS] = True
    return len(urls)


def counts_by_url(*, session: Session) -> dict[str, dict[str, int]]:
    """Rows per URL and status (for `journey webhooks status`)."""
    found: dict[str, dict[str, int]] = {}
    query = select(OutboxEvent.url, OutboxEvent.status, func.count()).group_by(OutboxEvent.url, OutboxEvent.status)
    for url, status, count in session.execute(query).all():
        found.setdefault(url, {s: 0 for s in (PENDING, DELIVERED, FAILED)})[status] = int(count)
    return found
