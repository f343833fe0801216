"""Server-sent event streams of live events: one conversation's for its visitor, every conversation's for staff.

A stream sends the rows after its resume point, then waits for a notice on the bus (or 2 s, the safety net) and
reads again; typing and queue messages from the bus go straight through without an id (never a resume point).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from functools import partial

import anyio
from anyio import to_thread
from sse_starlette import EventSourceResponse, ServerSentEvent

from app.live import queue
from app.live.desk import LiveDesk

POLL_SECONDS = 2.0
SHUTDOWN_CHECK_SECONDS = 0.5
PING_SECONDS = 15


def _sse(event: dict, *, with_id: bool = True) -> ServerSentEvent:
    data = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
    return ServerSentEvent(data=data, event=event["kind"], id=str(event["id"]) if with_id else None)


def resume_point(last_event_id: str | None, after: int | None) -> int | None:
    """The id to resume after: the Last-Event-ID header wins over ?after; None when neither is a valid id."""
    for value in (last_event_id, after):
        if value is None:
            continue
        text = str(value).strip()
        if text.isdigit() and int(text) <= 2**53:
            return int(text)
    return None


async def _events(
    desk: LiveDesk, after: int, conversation_id: str | None, staff: bool, shutdown: anyio.Event
) -> AsyncIterator[ServerSentEvent]:
    last = after
    async with desk.bus.subscribe() as inbox:
        while not shutdown.is_set():
            rows = await to_thread.run_sync(
                partial(queue.read_events, sessions=desk.sessions, after=last, conversation_id=conversation_id)
            )
            for row in rows:
                yield _sse(row)
                last = row["id"]
                if staff and row["kind"] in queue.QUEUE_STATUS:
                    change = {"conversation_id": row["conversation_id"], "status": queue.QUEUE_STATUS[row["kind"]]}
                    yield _sse({"kind": "queue", "id": 0, **change}, with_id=False)
            if len(rows) == queue.READ_LIMIT:
                continue
            deadline = time.monotonic() + POLL_SECONDS
            while (remaining := deadline - time.monotonic()) > 0 and not shutdown.is_set():
                message = await inbox.get(min(remaining, SHUTDOWN_CHECK_SECONDS))
                if message is None:
                    continue
                mine = conversation_id is None or message.get("conversation_id") == conversation_id
                kind = message.get("type")
                if kind == "notice" and mine:
                    break
                if kind == "typing" and mine and (staff or message.get("who") == "agent"):
                    typing = {k: v for k, v in message.items() if k != "type"}
                    yield _sse({**typing, "kind": "typing", "id": 0}, with_id=False)
                elif kind == "note" and staff and mine:  # internal notes: staff streams only, never a visitor's
                    note = {"conversation_id": message.get("conversation_id"), "note": message.get("note")}
                    yield _sse({"kind": "note", "id": 0, **note}, with_id=False)
                elif kind == "queue" and staff:
                    change = {"conversation_id": message.get("conversation_id"), "status": message.get("status")}
                    yield _sse({"kind": "queue", "id": 0, **change}, with_id=False)


def _ping() -> ServerSentEvent:
    return ServerSentEvent(comment="ping")


class _Held(EventSourceResponse):
    """An event stream that calls `ended` once it is over (finished, cut by the client or by shutdown)."""

    def __init__(self, *args, ended: Callable[[], None], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._ended = ended

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._ended()


def respond(
    desk: LiveDesk, *, after: int, conversation_id: str | None, staff: bool, ended: Callable[[], None] = lambda: None
) -> EventSourceResponse:
    """The streaming response (pings every 15 s, proxies told not to buffer, ended cleanly when the server stops);
    `ended` is called when it is over."""
    shutdown = anyio.Event()  # set by sse-starlette on SIGTERM: the stream ends; the client resumes elsewhere
    return _Held(
        _events(desk, after, conversation_id, staff, shutdown),
        shutdown_event=shutdown,
        shutdown_grace_period=1.0,
        ping=PING_SECONDS,
        ping_message_factory=_ping,
        send_timeout=30,
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        ended=ended,
    )
