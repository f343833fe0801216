"""Touchpoints as CSV or JSON lines, streamed from the database in batches (never all in memory)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator

from sqlalchemy import select

from app.staff.service import ConversationFilter, filtered
from app.store.models import Conversation, Touchpoint

COLUMNS = (
    "id",
    "conversation_id",
    "visitor_id",
    "turn",
    "kind",
    "created_at",
    "stage",
    "stage_confidence",
    "previous_stage",
    "stage_changed",
    "question",
    "reply",
    "sources",
    "page",
    "retrieval_score",
    "mode",
    "model",
    "latency_ms",
    "outcome",
    "error",
    "data",
)
BATCH = 500
# a spreadsheet runs a cell that starts with one of these as a formula (OWASP CSV injection)
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def touchpoint_rows(sessions, f: ConversationFilter) -> Iterator[dict]:
    """Every touchpoint of the conversations the filter selects, oldest first, as plain dicts."""
    conversations = filtered(select(Conversation.id), f).scalar_subquery()
    query = (
        select(Touchpoint)
        .where(Touchpoint.conversation_id.in_(conversations))
        .order_by(Touchpoint.created_at, Touchpoint.id)
        .execution_options(yield_per=BATCH)
    )
    with sessions() as session:
        for touchpoint in session.scalars(query):
            yield {c: getattr(touchpoint, c) for c in COLUMNS}
            session.expunge(touchpoint)


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def _csv_cell(value) -> str:
    """A CSV cell a spreadsheet shows as text: a leading formula character gets a single quote before it."""
    text = _cell(value)
    if isinstance(value, str) and text.startswith(FORMULA_STARTS):
        return "'" + text
    return text


def as_csv(rows: Iterator[dict]) -> Iterator[str]:
    """CSV text, header first, a chunk per row; text cells are neutralised against formula injection."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(COLUMNS)
    yield buffer.getvalue()
    for row in rows:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow([_csv_cell(row[c]) for c in COLUMNS])
        yield buffer.getvalue()


def as_jsonl(rows: Iterator[dict]) -> Iterator[str]:
    """One JSON object per line."""
    for row in rows:
        yield json.dumps(row, default=_cell, ensure_ascii=False) + "\n"
