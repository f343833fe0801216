"""The correction loop: staff corrections and curated answers from the database, shared by every worker."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import numpy as np

from app.staff.service import learned_examples, learning_version, list_answers
from app.store.spool import DATABASE_DOWN

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CuratedMatch:
    """A curated answer close enough to the visitor's message."""

    id: int
    question: str
    answer: str
    similarity: float


class Learning:
    """Polls the database (cheaply) and keeps the detector's learned examples and the curated answers current."""

    def __init__(self, *, sessions, detector, vectors, threshold: float, poll_seconds: float = 5.0) -> None:
        self.sessions = sessions
        self.detector = detector
        self.vectors = vectors
        self.threshold = threshold
        self.poll_seconds = poll_seconds
        self._version: tuple | None = None
        self._examples: list[tuple[str, str]] = []
        self._checked = 0.0
        self._answers: list[tuple[int, str, str]] = []
        self._matrix = np.zeros((0, 1), dtype=np.float32)
        self._lock = threading.Lock()

    def refresh(self, *, force: bool = False) -> None:
        """Reload when the corrections or curated answers changed (at most every poll_seconds unless forced)."""
        now = time.monotonic()
        if not force and now - self._checked < self.poll_seconds:
            return
        with self._lock:
            self._checked = now
            try:
                with self.sessions() as session:
                    version = learning_version(session=session)
                    if version == self._version and not force:
                        return
                    examples = learned_examples(session=session)
                    answers = [(a.id, a.question, a.answer) for a in list_answers(session=session)]
            except DATABASE_DOWN as error:  # turns go on with what was learned before; retried after poll_seconds
                if force:
                    raise
                log.warning("learning not refreshed, database unreachable: %s", str(error).splitlines()[0][:200])
                return
            if examples != self._examples:
                self.detector.set_learned(examples)
                self._examples = examples
            self._matrix = self.vectors.embed_array([q for _, q, _ in answers]) if answers else self._matrix[:0]
            self._answers = answers
            self._version = version
            log.info("learning refreshed: %d corrections, %d curated answers", len(examples), len(answers))

    def match(self, vector: np.ndarray) -> CuratedMatch | None:
        """The closest curated answer at or above the threshold."""
        answers, matrix = self._answers, self._matrix
        if not answers:
            return None
        sims = matrix @ vector
        best = int(np.argmax(sims))
        if float(sims[best]) < self.threshold:
            return None
        answer_id, question, answer = answers[best]
        return CuratedMatch(answer_id, question, answer, float(sims[best]))
