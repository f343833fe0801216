"""Erasing a visitor's words from other visitors' touchpoints.

A staff correction makes a visitor's message a learned example, and a curated answer may keep their question: both
are then quoted in what other turns store (`example`/`correction` evidence, `data.curated_question`). Erasure drops
those quotes, leaving a tombstone in the evidence so staff still see that a learned example counted.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.staff.models import CuratedAnswer, StageExample
from app.stages.evidence import LEARNED
from app.store.models import Touchpoint

QUOTING = ("example", "correction")  # evidence types that carry an example's text
CURATED = "curated_question"  # the touchpoint data key that quotes a curated answer's question
CLOCK_SKEW = timedelta(hours=1)  # workers' clocks may differ; a quote is never older than its source turn minus this


def scrub_evidence(evidence: list | None, texts: set[str]) -> list | None:
    """The evidence without the text of these examples (a tombstone stays), or None when none was quoted."""
    if not evidence or not texts:
        return None
    scrubbed, changed = [], False
    for item in evidence:
        if isinstance(item, dict) and item.get("type") in QUOTING and item.get("text") in texts:
            item = {**{k: v for k, v in item.items() if k != "text"}, LEARNED: True, "erased": True}
            changed = True
        scrubbed.append(item)
    return scrubbed if changed else None


def _earliest(session: Session, source_ids: list[str | None]) -> datetime | None:
    """When the first of these turns was recorded; None (look everywhere) if any is unknown or gone."""
    wanted = set(source_ids)
    if not wanted or None in wanted:
        return None
    times = session.execute(select(Touchpoint.id, Touchpoint.created_at).where(Touchpoint.id.in_(wanted))).all()
    if len(times) < len(wanted):  # a source turn was purged (retention): its example may be older than any we know
        return None
    return min(t for _, t in times) - CLOCK_SKEW


def forget_quotes(*, session: Session, visitor_id: str) -> int:
    """Drop the visitor's learned examples and curated questions quoted on others' touchpoints; how many changed."""
    # it reads the examples and curated answers: run it before they are deleted; it does not commit
    examples = session.execute(
        select(StageExample.text, StageExample.source_touchpoint_id).where(StageExample.visitor_id == visitor_id)
    ).all()
    answers = session.execute(
        select(CuratedAnswer.id, CuratedAnswer.source_touchpoint_id).where(CuratedAnswer.visitor_id == visitor_id)
    ).all()
    if not examples and not answers:
        return 0
    texts = {text for text, _ in examples}
    answer_ids = {answer_id for answer_id, _ in answers}
    query = select(Touchpoint.id, Touchpoint.stage_evidence, Touchpoint.data).where(
        Touchpoint.visitor_id != visitor_id, Touchpoint.kind == "exchange"
    )
    since = _earliest(session, [source for _, source in [*examples, *answers]])
    if since is not None:
        query = query.where(Touchpoint.created_at >= since)
    evidence_updates, data_updates = [], []
    for touchpoint_id, evidence, data in session.execute(query.execution_options(yield_per=500)):
        scrubbed = scrub_evidence(evidence, texts)
        if scrubbed is not None:
            evidence_updates.append({"id": touchpoint_id, "stage_evidence": scrubbed})
        if data and data.get("curated_answer_id") in answer_ids and CURATED in data:
            data_updates.append({"id": touchpoint_id, "data": {k: v for k, v in data.items() if k != CURATED}})
    for updates in (evidence_updates, data_updates):
        if updates:
            session.execute(update(Touchpoint), updates)
    return len({u["id"] for u in evidence_updates + data_updates})
