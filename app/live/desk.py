"""The live desk: what the chat service asks while a person has (or is asked to take) a conversation.

While a request is `live` the bot is silent: the visitor's message becomes a visitor_message touchpoint and a
`visitor.message` event. While it is `waiting` or `unavailable` the bot answers and the message is also published.
Otherwise the bot asks for a person itself when the visitor plainly wants one, is frustrated, or the knowledge base
could not answer twice in a row.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re

import anyio
from anyio import to_thread
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import sessionmaker

from app.config import Settings
from app.live import service
from app.live.bus import LocalBus, make_bus
from app.live.models import LIVE
from app.security.redact import redact
from app.store.models import Touchpoint

log = logging.getLogger("journey.live")

ASKS_FOR_PERSON = (
    "talk to a human",
    "speak to a human",
    "talk to a person",
    "speak to a person",
    "talk to someone",
    "speak to someone",
    "talk to an agent",
    "speak to an agent",
    "real person",
    "real human",
    "human please",
    "agent please",
    "person please",
    "live agent",
)
FRUSTRATED = (
    "this is useless",
    "you are useless",
    "you're useless",
    "youre useless",
    "not helpful at all",
    "this is not helping",
    "you're not helping",
    "waste of time",
)
LOOK_BACK = 12


def _words(message: str) -> str:
    return " " + " ".join(re.findall(r"[a-z']+", message.lower())) + " "


def frustration(message: str) -> str | None:
    """`bot_frustrated` when the visitor plainly asks for a person or says the bot is no use, else None."""
    said = _words(message)
    if any(f" {phrase} " in said for phrase in ASKS_FOR_PERSON + FRUSTRATED):
        return "bot_frustrated"
    return None


def unanswered(t: Touchpoint, is_small_talk) -> bool:
    """An exchange the knowledge base could not answer (no sources, not small talk, not a staff answer, no error)."""
    return (
        t.kind == "exchange"
        and not t.sources
        and bool(t.reply)
        and not t.error
        and t.mode != "curated"
        and t.outcome == "ok"
        and not is_small_talk(t.question or "")
    )


def reason_from_history(touchpoints: list[Touchpoint], is_small_talk) -> str | None:
    """Since the last handoff: two thumbs-down is `bot_frustrated`; the last two exchanges unanswered, `bot_no_answer`.

    `touchpoints` are the conversation's latest, newest first.
    """
    recent = []
    for t in touchpoints:
        if t.kind in service.HANDOFF_KINDS:
            break
        recent.append(t)
    downs = sum(1 for t in recent if t.kind == "feedback" and (t.data or {}).get("rating") == "down")
    if downs >= 2:
        return "bot_frustrated"
    exchanges = [t for t in recent if t.kind == "exchange"][:2]
    if len(exchanges) == 2 and all(unanswered(t, is_small_talk) for t in exchanges):
        return "bot_no_answer"
    return None


class LiveDesk:
    """Live handoff state for the chat service and the live endpoints of one process."""

    def __init__(self, *, sessions: sessionmaker, settings: Settings, bus: LocalBus) -> None:
        self.sessions = sessions
        self.settings = settings
        self.bus = bus

    async def notify(self, conversation_id: str) -> None:
        """Tell every stream that the conversation has new events (after the commit)."""
        await self.bus.publish({"type": "notice", "conversation_id": conversation_id})

    async def status(self, conversation_id: str) -> str | None:
        """waiting, unavailable, live, or None (the bot has it)."""
        return await to_thread.run_sync(
            lambda: service.status_of(sessions=self.sessions, conversation_id=conversation_id)
        )

    def _scrub(self, text: str) -> str:
        return redact(text) if self.settings.redact_pii else text

    async def human_turn(self, p, state) -> list[tuple[str, dict]] | None:
        """While a person holds the conversation: record and publish the message, return stage and done events."""
        if not p.request.conversation_id:
            return None
        try:
            if await self.status(p.conversation_id) != LIVE:
                return None
        except DBAPIError:  # the database is down: the bot answers (and its turn is kept in the spool)
            log.warning("live: could not read the handoff status of %s", p.conversation_id)
            return None
        request = p.request
        page = request.page.as_record() if request.page else None
        if page and self.settings.redact_pii:
            page = {**page, "url": redact(page["url"]), "referrer": redact(page["referrer"])}
        with anyio.CancelScope(shield=True):
            event, stage_name = await to_thread.run_sync(
                lambda: service.visitor_message(
                    sessions=self.sessions,
                    conversation_id=p.conversation_id,
                    text=self._scrub(request.message),
                    page=page,
                    record=True,
                )
            )
            state.recorded = True
            await self.notify(p.conversation_id)
        stage = {
            "name": stage_name or p.previous_stage or "",
            "confidence": 1.0,
            "evidence": [],
            "scores": {},
            "previous": p.previous_stage,
        }
        done = {
            "conversation_id": p.conversation_id,
            "visitor_id": p.visitor_id,
            "message_id": f"live-{event['id']}",
            "reply": "",
            "stage": stage,
            "sources": [],
            "suggestions": [],
            "handoff": {"suggested": False, "reason": None, "requested": True, "status": LIVE},
            "mode": "human",
            "model": None,
            "outcome": "human",
            "latency_ms": 0,
            "event_id": event["id"],
        }
        return [("stage", stage), ("done", done)]

    async def after_turn(self, p, payload: dict, is_small_talk) -> dict:
        """After the bot answered: publish the message to a waiting person, or ask for one when the rule says so."""
        try:
            with anyio.CancelScope(shield=True):
                return await self._after_turn(p, payload, is_small_talk)
        except DBAPIError as exc:  # the database is down: the reply went to the spool; nothing to publish now
            log.warning("live: after-turn step skipped for %s: %s", p.conversation_id, type(exc).__name__)
            return payload
        except Exception:  # noqa: BLE001 - the reply is recorded; the live side must not turn it into an error
            log.exception("live: after-turn step failed for conversation %s", p.conversation_id)
            return payload

    async def _after_turn(self, p, payload: dict, is_small_talk) -> dict:
        status, history_reason = None, None  # a conversation this turn started has no request and one exchange
        if p.request.conversation_id:
            status, history_reason = await to_thread.run_sync(self._after_turn_state, p.conversation_id, is_small_talk)
        if status is not None:
            await to_thread.run_sync(
                lambda: service.visitor_message(
                    sessions=self.sessions,
                    conversation_id=p.conversation_id,
                    text=self._scrub(p.request.message),
                    record=False,
                )
            )
            await self.notify(p.conversation_id)
            return payload
        reason = frustration(p.request.message) or history_reason
        if reason is None:
            return payload
        page = p.request.page.as_record() if p.request.page else None
        out = await to_thread.run_sync(
            lambda: service.request_handoff(
                sessions=self.sessions,
                settings=self.settings,
                conversation_id=p.conversation_id,
                visitor_id=p.visitor_id,
                reason=reason,
                message=self._scrub(p.request.message),
                page=page,
            )
        )
        await self.notify(p.conversation_id)
        payload["handoff"] = {"suggested": True, "reason": reason, "requested": True, "status": out["status"]}
        payload["next_steps"] = out["next_steps"]
        return payload

    def _after_turn_state(self, conversation_id: str, is_small_talk) -> tuple[str | None, str | None]:
        """The open request's status and the reason the history gives to ask for a person, read in one session."""
        with self.sessions() as session:
            status = service.open_status(session=session, conversation_id=conversation_id)
            if status is not None:
                return status, None
            rows = session.scalars(
                select(Touchpoint)
                .where(Touchpoint.conversation_id == conversation_id)
                .order_by(Touchpoint.turn.desc())
                .limit(LOOK_BACK)
            ).all()
            return None, reason_from_history(list(rows), is_small_talk)

    async def sweep_loop(self, interval: float) -> None:
        """Every `interval` seconds, mark requests nobody claimed in time unavailable and tell the streams."""
        while True:
            try:
                announced = await to_thread.run_sync(
                    lambda: service.sweep(sessions=self.sessions, settings=self.settings)
                )
                for conversation_id in announced:
                    await self.notify(conversation_id)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a database hiccup: try again on the next round
                log.exception("live: the unclaimed-request sweep failed")
            await asyncio.sleep(interval)


class OpenDesk:
    """The desk of a running app, with its bus connection and sweep task."""

    def __init__(self, desk: LiveDesk, sweeper: asyncio.Task) -> None:
        self.desk = desk
        self._sweeper = sweeper

    async def close(self) -> None:
        """Stop the sweep and the bus."""
        self._sweeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._sweeper
        await self.desk.bus.stop()


async def open_desk(app, services) -> OpenDesk:
    """Build the desk for the app's lifespan: start the bus and the sweep, give it to the chat service."""
    settings = services.settings
    desk = LiveDesk(sessions=services.chat.sessions, settings=settings, bus=make_bus(settings.redis_url))
    await desk.bus.start()
    interval = min(max(settings.handoff_wait_seconds / 4, 0.25), 5.0)
    app.state.live = desk
    services.chat.live = desk
    return OpenDesk(desk, asyncio.create_task(desk.sweep_loop(interval)))
