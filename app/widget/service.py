"""Starter questions for an empty chat, fitting the stage the page suggests."""

from __future__ import annotations

import numpy as np

from app.answer.suggestions import pick_suggestions
from app.chat.service import ChatService
from app.stages.config import JourneyConfig

STARTER_COUNT = 3


def page_stage(journey: JourneyConfig, page_url: str) -> str | None:
    """The stage of the strongest page rule matching the URL, if any."""
    matching = [rule for rule in journey.page_rules if rule.matches(page_url, "")]
    return max(matching, key=lambda rule: rule.weight).stage if matching else None


def typical_questions(*, chat: ChatService, stage: str) -> list[str]:
    """Questions of the documents tagged with the stage, the most typical of its examples first, one per document."""
    entries = [e for e in chat.kb.catalog().values() if stage in e.stages and e.questions]
    questions = [q for e in entries for q in e.questions]
    if not questions:
        return []
    examples = list(chat.journey.get(stage).examples)
    vectors = chat.vectors.embed_array(questions + examples)
    centre = vectors[len(questions) :].mean(axis=0)
    scores = vectors[: len(questions)] @ (centre / (np.linalg.norm(centre) or 1.0))
    best: dict[str, tuple[float, str]] = {}
    position = 0
    for entry in entries:
        for question in entry.questions:
            score = float(scores[position])
            position += 1
            if entry.doc_id not in best or score > best[entry.doc_id][0]:
                best[entry.doc_id] = (score, question)
    return [question for _, question in sorted(best.values(), reverse=True)]


def starter_questions(*, chat: ChatService, stage: str | None, page_url: str, count: int = STARTER_COUNT) -> dict:
    """Starter questions for the stage given, else the page URL's (page rules), else the first stage."""
    from_page = page_stage(chat.journey, page_url) if page_url else None
    chosen = stage or from_page or chat.journey.names[0]
    candidates = typical_questions(chat=chat, stage=chosen)
    suggestions = pick_suggestions(candidates=candidates, asked=[], embed=chat.vectors.embed_array, count=count)
    basis = "stage" if stage else "page_rule" if from_page else "default"
    return {"stage": chosen, "basis": basis, "suggestions": suggestions}
