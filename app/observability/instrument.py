"""Watch a chat service from outside: phase timings around its parts, metrics and a log line per touchpoint."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import AsyncIterator, Callable

from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

from app.observability import metrics
from app.store.models import Touchpoint

log = logging.getLogger("journey.turns")
COMMITTED = "journey_committed_touchpoints"


def _timed(fn: Callable, phase: str) -> Callable:
    histogram = metrics.PHASE_SECONDS.labels(phase=phase)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            histogram.observe(time.perf_counter() - started)

    return wrapper


def _timed_async(fn: Callable, phase: str) -> Callable:
    histogram = metrics.PHASE_SECONDS.labels(phase=phase)

    @functools.wraps(fn)
    async def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return await fn(*args, **kwargs)
        finally:
            histogram.observe(time.perf_counter() - started)

    return wrapper


def _timed_stream(fn: Callable) -> Callable:
    """The LLM answer stream: time to first token and to the last."""
    first = metrics.PHASE_SECONDS.labels(phase="llm_first_token")
    whole = metrics.PHASE_SECONDS.labels(phase="llm_answer")

    @functools.wraps(fn)
    async def wrapper(*args, **kwargs) -> AsyncIterator[str]:
        started = time.perf_counter()
        seen = False
        pieces = fn(*args, **kwargs)
        try:
            async for piece in pieces:
                if not seen:
                    seen = True
                    first.observe(time.perf_counter() - started)
                yield piece
        finally:
            await pieces.aclose()  # closed now, not by the garbage collector, when the visitor leaves mid-stream
            whole.observe(time.perf_counter() - started)

    return wrapper


def _counted_vote(fn: Callable) -> Callable:
    """The LLM stage vote: timed, and counted as an error when it gives no answer (it returns None on failure)."""
    histogram = metrics.PHASE_SECONDS.labels(phase="llm_stage")

    @functools.wraps(fn)
    async def wrapper(*args, **kwargs):
        started = time.perf_counter()
        result = await fn(*args, **kwargs)
        histogram.observe(time.perf_counter() - started)
        if result is None:
            metrics.LLM_ERRORS.labels(call="stage", outcome="no_vote").inc()
        return result

    return wrapper


def _wrap(obj, name: str, make: Callable[[Callable], Callable]) -> None:
    fn = getattr(obj, name, None) if obj is not None else None
    if fn is not None and not getattr(fn, "_journey_timed", False):
        wrapped = make(fn)
        wrapped._journey_timed = True
        setattr(obj, name, wrapped)


def observe_chat(chat) -> None:
    """Time the phases of the chat service's turns and count every touchpoint its sessions commit."""
    _wrap(chat.kb.embeddings, "embed_array", lambda f: _timed(f, "embed"))
    _wrap(chat.detector, "detect", lambda f: _timed(f, "stage"))
    _wrap(chat.kb, "search", lambda f: _timed(f, "retrieve"))
    _wrap(chat, "record", lambda f: _timed_async(f, "record"))
    _wrap(chat.llm, "stream", _timed_stream)
    _wrap(chat.stage_llm, "classify", _counted_vote)
    observe_touchpoints(chat.sessions)


def observe_touchpoints(sessions: sessionmaker) -> None:
    """After each commit, count the touchpoints it made and log one line per exchange."""

    def before_flush(session: Session, _context, _instances) -> None:
        new = [o for o in session.new if isinstance(o, Touchpoint)]
        if new:
            session.info.setdefault(COMMITTED, []).extend(new)

    def after_commit(session: Session) -> None:
        for touchpoint in session.info.pop(COMMITTED, []):
            metrics.observe_touchpoint(touchpoint)
            log.info(
                "%s recorded",
                touchpoint.kind or "exchange",
                extra={
                    "kind": touchpoint.kind or "exchange",
                    "touchpoint_id": touchpoint.id,
                    "conversation_id": touchpoint.conversation_id,
                    "turn": touchpoint.turn,
                    "stage": touchpoint.stage,
                    "stage_changed": bool(touchpoint.stage_changed),
                    "mode": touchpoint.mode,
                    "outcome": touchpoint.outcome,
                    "latency_ms": touchpoint.latency_ms,
                },
            )

    def after_rollback(session: Session) -> None:
        session.info.pop(COMMITTED, None)

    event.listen(sessions, "before_flush", before_flush)
    event.listen(sessions, "after_commit", after_commit)
    event.listen(sessions, "after_rollback", after_rollback)
