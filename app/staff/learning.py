"""The correction loop: staff corrections and curated answers from the database, shared by every worker.

Every worker keeps the detector's learned examples and the curated answers' vectors in memory, derived from the
database. The worker that saves a change reloads at once (`changed`); with JOURNEY_REDIS_URL it also publishes a
notice on the Redis channel `journey:learning` and every other worker reloads within moments. The notice is only a
wake-up: each worker also checks a cheap version of the tables every poll_seconds, so a lost notice (or no Redis)
costs at most that delay.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass

import numpy as np

from app.staff.service import learned_examples, learning_version, list_answers
from app.store.spool import DATABASE_DOWN

log = logging.getLogger(__name__)
CHANNEL = "journey:learning"


@dataclass(frozen=True)
class CuratedMatch:
    """A curated answer close enough to the visitor's message."""

    id: int
    question: str
    answer: str
    similarity: float


class Learning:
    """Keeps the detector's learned examples and the curated answers current in this worker."""

    def __init__(self, *, sessions, detector, vectors, threshold: float, poll_seconds: float = 5.0) -> None:
        self.sessions = sessions
        self.detector = detector
        self.vectors = vectors
        self.threshold = threshold
        self.poll_seconds = poll_seconds
        self._version: tuple | None = None
        self._examples: list[tuple[str, str]] = []
        self._checked = 0.0
        # answers and their question vectors are swapped together, so match() never sees one without the other
        self._curated: tuple[list[tuple[int, str, str]], np.ndarray] = ([], np.zeros((0, 1), dtype=np.float32))
        self._lock = threading.Lock()
        self._notices: Notices | None = None

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
                log.warning("learning not refreshed, database unreachable: %s", str(error).splitlines()[0][:200])
                return
            if examples != self._examples:
                self.detector.set_learned(examples)
                self._examples = examples
            matrix = self.vectors.embed_array([q for _, q, _ in answers]) if answers else self._curated[1][:0]
            self._curated = (answers, matrix)
            self._version = version
            log.info("learning refreshed: %d corrections, %d curated answers", len(examples), len(answers))

    def changed(self) -> None:
        """Staff changed a correction or curated answer: reload here and tell the other workers."""
        self.refresh(force=True)
        if self._notices is not None:
            self._notices.publish()

    def listen(self, redis_url: str | None) -> None:
        """With Redis, reload whenever another worker announces a change (a background thread)."""
        if redis_url and self._notices is None:
            self._notices = Notices(redis_url, on_notice=lambda: self.refresh(force=True))
            self._notices.start()

    def close(self) -> None:
        """Stop listening."""
        if self._notices is not None:
            self._notices.stop()
            self._notices = None

    def match(self, vector: np.ndarray) -> CuratedMatch | None:
        """The closest curated answer at or above the threshold."""
        answers, matrix = self._curated
        if not answers:
            return None
        sims = matrix @ vector
        best = int(np.argmax(sims))
        if float(sims[best]) < self.threshold:
            return None
        answer_id, question, answer = answers[best]
        return CuratedMatch(answer_id, question, answer, float(sims[best]))


class Notices:
    """Change notices between workers on the Redis pub/sub channel CHANNEL (a listener thread per worker)."""

    def __init__(self, redis_url: str, *, on_notice) -> None:
        import redis

        self.sender = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._redis = redis.Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=5)
        self._on_notice = on_notice
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._listen, name="learning-notices", daemon=True)

    def start(self) -> None:
        """Start the listener; returns once subscribed (or after 5 s: it keeps retrying in the background)."""
        self._thread.start()
        self._ready.wait(5)

    def stop(self) -> None:
        """Stop the listener and close the connections."""
        self._stop.set()
        self._thread.join(5)
        self._redis.close()

    def publish(self) -> None:
        """Announce a change; if Redis is down the other workers still see it at their next poll."""
        try:
            self._redis.publish(CHANNEL, json.dumps({"from": self.sender}))
        except Exception as exc:  # noqa: BLE001 - the change is committed; polling carries it to the others
            log.warning("learning notice not sent (%s): other workers pick the change up at their next poll", exc)

    def _listen(self) -> None:
        while not self._stop.is_set():
            try:
                pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
                try:
                    pubsub.subscribe(CHANNEL)
                    self._ready.set()
                    while not self._stop.is_set():
                        message = pubsub.get_message(timeout=1.0)
                        if message and message.get("type") == "message" and self._from_other(message["data"]):
                            self._on_notice()
                finally:
                    pubsub.close()
            except Exception as exc:  # noqa: BLE001 - Redis or the database hiccuped: polling still works; retry
                log.warning("learning notices: %s; listening again in 1 s", exc)
                self._stop.wait(1)

    def _from_other(self, data: bytes) -> bool:
        try:
            return json.loads(data).get("from") != self.sender
        except (ValueError, AttributeError):
            return True
