"""Follow-up questions drawn from the knowledge base's documents, fitting the stage."""

from __future__ import annotations

import re

from app.kb.store import CatalogEntry, Hit

_WORD = re.compile(r"[a-z0-9]+")


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def _too_close(a: str, b: str) -> bool:
    """True when two questions share most of their words."""
    wa, wb = _words(a), _words(b)
    return bool(wa and wb) and len(wa & wb) / len(wa | wb) >= 0.6


def pick_suggestions(
    *,
    catalog: dict[str, CatalogEntry],
    hits: list[Hit],
    stage: str,
    following_stage: str | None,
    asked: list[str],
    count: int = 3,
) -> list[str]:
    """2-4 questions: from the documents just used, then from documents for this and the next stage."""
    seen_docs: list[str] = list(dict.fromkeys(h.doc_id for h in hits))
    stage_docs = sorted(
        (e for e in catalog.values() if stage in e.stages and e.doc_id not in seen_docs),
        key=lambda e: (e.stages.index(stage), e.doc_id),
    )
    next_docs = sorted(
        (e for e in catalog.values() if following_stage and following_stage in e.stages), key=lambda e: e.doc_id
    )
    order = [catalog[d] for d in seen_docs if d in catalog] + stage_docs[:3] + next_docs[:1]
    picked: list[str] = []
    for round_index in range(4):
        for entry in order:
            if round_index < len(entry.questions):
                question = entry.questions[round_index]
                if any(_too_close(question, q) for q in picked + asked):
                    continue
                picked.append(question)
                if len(picked) == count:
                    return picked
    return picked
