"""`journey export`: every touchpoint (optionally in a time window) as CSV or JSON lines, streamed in batches."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from app.staff.export import BATCH, COLUMNS, as_csv, as_jsonl
from app.store.models import Touchpoint


def parse_when(value: str | None) -> datetime | None:
    """An ISO date or date-time; without a zone it is UTC."""
    if not value:
        return None
    when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def rows(sessions: sessionmaker, *, since: datetime | None, until: datetime | None) -> Iterator[dict]:
    """Touchpoints created in [since, until), oldest first, fetched BATCH at a time and released after use."""
    query = select(Touchpoint).order_by(Touchpoint.created_at, Touchpoint.id).execution_options(yield_per=BATCH)
    if since is not None:
        query = query.where(Touchpoint.created_at >= since)
    if until is not None:
        query = query.where(Touchpoint.created_at < until)
    with sessions() as session:
        for touchpoint in session.scalars(query):
            yield {c: getattr(touchpoint, c) for c in COLUMNS}
            session.expunge(touchpoint)


def lines(sessions: sessionmaker, *, fmt: str, since: datetime | None, until: datetime | None) -> Iterator[str]:
    """The export as text chunks (CSV with a header row, or one JSON object per line)."""
    found = rows(sessions, since=since, until=until)
    return as_csv(found) if fmt == "csv" else as_jsonl(found)
