"""Follow-up questions drawn from the knowledge base's documents, fitting the stage."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from app.kb.store import CatalogEntry, Hit

MAX_SIMILARITY = 0.75


def candidate_questions(
    *, catalog: dict[str, CatalogEntry], hits: list[Hit], stage: str, following_stage: str | None
) -> list[str]:
    """Questions from the documents just used, then documents for this stage and the next, round-robin."""
    seen_docs = list(dict.fromkeys(h.doc_id for h in hits))
    stage_docs = sorted(
        (e for e in catalog.values() if stage in e.stages and e.doc_id not in seen_docs),
        key=lambda e: (e.stages.index(stage), e.doc_id),
    )
    next_docs = sorted(
        (e for e in catalog.values() if following_stage and following_stage in e.stages and e.doc_id not in seen_docs),
        key=lambda e: e.doc_id,
    )
    order = [catalog[d] for d in seen_docs if d in catalog] + stage_docs[:3] + next_docs[:1]
    rounds = max((len(e.questions) for e in order), default=0)
    out = [e.questions[r] for r in range(rounds) for e in order if r < len(e.questions)]
    return list(dict.fromkeys(out))


def pick_suggestions(
    *, candidates: list[str], asked: list[str], embed: Callable[[list[str]], np.ndarray], count: int = 3
) -> list[str]:
    """Up to count candidates, skipping any too close in meaning to what was asked or already picked."""
    if not candidates:
        return []
    vectors = embed(candidates + asked)
    chosen: list[int] = []
    taken = [vectors[len(candidates) + i] for i in range(len(asked))]
    for index in range(len(candidates)):
        vector = vectors[index]
        if taken and max(float(vector @ other) for other in taken) >= MAX_SIMILARITY:
            continue
        chosen.append(index)
        taken.append(vector)
        if len(chosen) == count:
            break
    return [candidates[i] for i in chosen]
