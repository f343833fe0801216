"""What a message is about: the stages of the knowledge passages that answer it, weighed by how close they are.

Documents are tagged with the stages they serve (a feature guide is adoption, a troubleshooting page support). The
passages nearest to a message lend their stages a few logits, in proportion to how far their similarity rises above
a floor (averaged over the passages), so passages of unrelated topics (a banking question against a booking tool's
help centre) add nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

PASSAGES = 4  # nearest passages the service looks up for the detector (vector search only, no BM25)
SIMILARITY_FLOOR = 0.5  # passages less similar than this lend nothing
WEIGHT = 4.0  # logits the passages lend at most: all of them of similarity 1.0 and tagged with the same stage


class _Hit(Protocol):
    doc_id: str
    stages: tuple[str, ...]
    similarity: float


@dataclass(frozen=True)
class PassageSignal:
    """A knowledge passage near the message: its document, the stages it is tagged with and its cosine similarity."""

    doc_id: str
    stages: tuple[str, ...]
    similarity: float


def from_hits(hits: Iterable[_Hit]) -> tuple[PassageSignal, ...]:
    """The signals of knowledge base search hits."""
    return tuple(PassageSignal(h.doc_id, tuple(h.stages), float(h.similarity)) for h in hits)


def passage_logits(
    passages: Iterable[PassageSignal],
    names: list[str],
    *,
    floor: float = SIMILARITY_FLOOR,
    weight: float = WEIGHT,
) -> tuple[np.ndarray, list[dict]]:
    """Logits to add per stage, and evidence naming the passages that lent them (none below the floor)."""
    passages = list(passages)
    logits = np.zeros(len(names))
    evidence = []
    for passage in passages:
        stages = [s for s in passage.stages if s in names]
        lift = weight * (passage.similarity - floor) / (1.0 - floor) / len(passages)
        if not stages or lift <= 0:
            continue
        for stage in stages:
            logits[names.index(stage)] += lift / len(stages)
        evidence.append(
            {
                "type": "passage",
                "document": passage.doc_id,
                "stages": stages,
                "similarity": round(passage.similarity, 3),
                "detail": "a knowledge passage that answers the message is tagged with these stages",
            }
        )
    return logits, evidence


class _Searcher(Protocol):
    def search(self, query_vector: list[float], *, stage: str | None, k: int, stage_boost: float) -> list: ...


def nearest(kb: _Searcher, vector: np.ndarray, k: int = PASSAGES) -> tuple[PassageSignal, ...]:
    """The k knowledge passages nearest to a message's vector (cosine only: no stage preference, no keywords)."""
    return from_hits(kb.search(vector.tolist(), stage=None, k=k, stage_boost=0.0))
