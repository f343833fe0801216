"""Who sees which evidence: staff see all of it; visitors never see examples learned from other visitors' words.

A staff correction turns a visitor's message into a labelled example (app/staff/learning.py). The detector marks
evidence drawn from such examples `"learned": true`; touchpoints store it for staff, and every response to a visitor
goes through `visitor_stage`, which leaves the learned items out.
"""

from __future__ import annotations

import numpy as np

LEARNED = "learned"


def nearest_examples(
    *, texts: list[str], sims: np.ndarray, indices: np.ndarray, configured: int, stage: str, k: int
) -> list[dict]:
    """`example` evidence, most similar first: the k nearest of `indices` and the k nearest configured ones."""
    # indices below `configured` are examples of stages.yaml, the others learned (marked): visitors, who see only
    # the configured ones, still get k of them
    order = indices[np.argsort(sims[indices])[::-1]]
    shown = set(order[:k].tolist()) | set(order[order < configured][:k].tolist())
    items = []
    for i in order:
        if int(i) in shown:
            item = {"type": "example", "stage": stage, "text": texts[i], "similarity": round(float(sims[i]), 3)}
            if i >= configured:
                item[LEARNED] = True
            items.append(item)
    return items


def visitor_evidence(evidence: list[dict]) -> list[dict]:
    """The evidence a visitor may see: everything but items drawn from learned (staff-corrected) examples."""
    return [item for item in evidence if not item.get(LEARNED)]


def visitor_stage(stage: dict) -> dict:
    """A stored stage object (StageResult.as_dict) as sent to visitors: the same, with visitor_evidence."""
    if not stage:
        return stage
    return {**stage, "evidence": visitor_evidence(stage.get("evidence") or [])}
