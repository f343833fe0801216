"""Stage detection: which journey stage a visitor's message puts them in, with confidence and evidence."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from app.stages.config import JourneyConfig

TOP_EXAMPLES = 3
TEMPERATURE = 0.04
VAGUE_SIMILARITY = 0.32
SWITCH_MARGIN = 0.15
KNOWN_CUSTOMER_PENALTY = 0.04
PRE_PURCHASE = ("awareness", "consideration", "decision")


@dataclass(frozen=True)
class StageSignals:
    """Everything the detector may look at for one visitor turn."""

    message: str
    history: tuple[str, ...] = ()
    page_url: str = ""
    page_title: str = ""
    known_customer: bool = False
    previous: str | None = None


@dataclass
class StageResult:
    """The stage of a turn, its confidence, every stage's score and readable evidence."""

    name: str
    confidence: float
    scores: dict[str, float]
    evidence: list[dict] = field(default_factory=list)
    previous: str | None = None

    @property
    def changed(self) -> bool:
        """True when this turn moved the conversation to another stage."""
        return self.previous is not None and self.previous != self.name

    def as_dict(self) -> dict:
        """The public shape: {name, confidence, evidence, scores, previous}."""
        return {
            "name": self.name,
            "confidence": round(self.confidence, 3),
            "evidence": self.evidence,
            "scores": {k: round(v, 3) for k, v in self.scores.items()},
            "previous": self.previous,
        }


class StageDetector(Protocol):
    """Anything that turns signals into a StageResult."""

    def detect(self, signals: StageSignals, vector: np.ndarray | None = None) -> StageResult:
        """Classify one visitor turn (vector: the message's embedding, if already computed)."""
        ...


class ExampleStageDetector:
    """Nearest labelled examples (local embeddings) + page rules + known customer + hysteresis."""

    def __init__(self, journey: JourneyConfig, embeddings) -> None:
        self.journey = journey
        self.embeddings = embeddings
        self._texts: list[str] = []
        self._labels: list[int] = []
        for index, stage in enumerate(journey.stages):
            self._texts.extend(stage.examples)
            self._labels.extend([index] * len(stage.examples))
        self._vectors = embeddings.embed_array(self._texts)
        self._label_array = np.array(self._labels)

    def detect(self, signals: StageSignals, vector: np.ndarray | None = None) -> StageResult:
        """Classify the message in its context."""
        names = self.journey.names
        query = vector if vector is not None else self.embeddings.embed_array([signals.message])[0]
        sims = self._vectors @ query
        raw = np.zeros(len(names), dtype=np.float64)
        nearest: dict[int, list[int]] = {}
        for index in range(len(names)):
            idx = np.flatnonzero(self._label_array == index)
            top = idx[np.argsort(sims[idx])[::-1][:TOP_EXAMPLES]]
            nearest[index] = top.tolist()
            raw[index] = float(sims[top].mean())
        evidence: list[dict] = []
        adjusted = raw.copy()
        page_stage = None
        for rule in self.journey.page_rules:
            if rule.matches(signals.page_url, signals.page_title):
                page_stage = names.index(rule.stage)
                adjusted[page_stage] += rule.weight
                evidence.append({"type": "page_rule", "pattern": rule.pattern, "stage": rule.stage})
                break
        if signals.known_customer:
            for name in PRE_PURCHASE:
                if name in names:
                    adjusted[names.index(name)] -= KNOWN_CUSTOMER_PENALTY
            evidence.append({"type": "known_customer", "detail": "host page says the visitor is a customer"})
        probs = np.exp((adjusted - adjusted.max()) / TEMPERATURE)
        probs /= probs.sum()
        best = int(np.argmax(probs))
        vague = float(sims.max()) < VAGUE_SIMILARITY
        previous = signals.previous if signals.previous in names else None
        chosen = best
        if previous is not None and previous != names[best]:
            prev_index = names.index(previous)
            if vague or probs[best] - probs[prev_index] < SWITCH_MARGIN:
                chosen = prev_index
                reason = "message too vague to move" if vague else "not clearly a different stage"
                evidence.append({"type": "kept_previous", "stage": previous, "detail": reason})
        elif previous is None and vague:
            chosen = page_stage if page_stage is not None else 0
            detail = "page rule" if page_stage is not None else "first stage of the journey"
            evidence.append({"type": "vague", "detail": f"no labelled example is close; defaulting to the {detail}"})
        evidence[:0] = [
            {"type": "example", "stage": names[chosen], "text": self._texts[i], "similarity": round(float(sims[i]), 3)}
            for i in nearest[chosen]
        ]
        confidence = float(probs[chosen])
        if vague:
            confidence = min(confidence, 0.5)
        return StageResult(
            name=names[chosen],
            confidence=confidence,
            scores={n: float(p) for n, p in zip(names, probs, strict=True)},
            evidence=evidence,
            previous=previous,
        )
