"""Visitor chat endpoints: POST /v1/chat and POST /v1/chat/stream."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator

import anyio
from fastapi import APIRouter, HTTPException, Request
from sse_starlette import EventSourceResponse, ServerSentEvent

from app.chat.schemas import ChatRequest, ChatResponse, Identity
from app.chat.service import ChatService, ConversationFull, Prepared, TurnState
from app.config import Settings
from app.deps import ChatDep
from app.errors import error_responses, event_stream
from app.kb.store import KnowledgeUnavailable
from app.security.identity import IdentityError, verify
from app.security.ratelimit import rate_limits
from app.store.service import ConversationNotFound

log = logging.getLogger(__name__)
TURN_FAILED = "the reply failed; please try again"
NOT_YOURS = (
    "conversation not found for this visitor: start a new conversation or send the visitor_id it was started with"
)
VISITOR_ERRORS = error_responses((404, "the conversation (or the reply) is not this visitor's"), 429, 503)
router = APIRouter(prefix="/v1", tags=["chat"], responses=VISITOR_ERRORS)


async def _prepare(request: Request, chat: ChatService, body: ChatRequest) -> Prepared:
    await rate_limits(request).check(request, body.visitor_id)
    if body.identity is not None:
        body.identity = _checked_identity(chat.settings, body.identity)
    try:
        return await chat.prepare(body)
    except ConversationNotFound as exc:
        raise HTTPException(status_code=404, detail=NOT_YOURS) from exc
    except ConversationFull as exc:
        raise HTTPException(
            status_code=409, detail=f"this conversation reached {exc.args[0]} turns: start a new conversation"
        ) from exc


def _checked_identity(settings: Settings, identity: Identity) -> Identity:
    """Verify a signed identity; unsigned ones pass (unverified) unless enforcement is on."""
    signed = identity.signature is not None
    if not settings.identity_secret:
        if settings.identity_enforce:
            raise HTTPException(503, "identity enforcement is on but JOURNEY_IDENTITY_SECRET is not set")
        return identity
    if not signed and not settings.identity_enforce:
        return identity
    try:
        verify(identity.model_dump(), settings.identity_secret)
    except IdentityError as exc:
        raise HTTPException(401, f"identity refused: {exc}") from exc
    return identity.model_copy(update={"verified": True})


CHAT_ERRORS = error_responses(
    (401, "the signed identity was refused"),
    (409, "the conversation reached JOURNEY_MAX_TURNS"),
    (503, "the reply failed or the knowledge base cannot be read; the turn is recorded (Retry-After)"),
)


@router.post("/chat", response_model=ChatResponse, responses=CHAT_ERRORS)
async def chat_once(body: ChatRequest, chat: ChatDep, request: Request) -> dict:
    """Answer one visitor message and return the whole reply."""
    prepared = await _prepare(request, chat, body)
    try:
        return await chat.answer(prepared)  # a turn that fails is still recorded (outcome server_error)
    except KnowledgeUnavailable:
        raise  # 503 with the reason (app/main.py)
    except Exception as exc:
        log.exception("turn %s failed", prepared.message_id)
        raise HTTPException(503, TURN_FAILED, headers={"Retry-After": "5"}) from exc


async def _events(chat: ChatService, prepared: Prepared, shutdown: anyio.Event) -> AsyncIterator[ServerSentEvent]:
    state = TurnState()
    chat.open_turns += 1
    try:
        async for name, data in chat.run(prepared, state):
            yield ServerSentEvent(event=name, data=json.dumps(data, ensure_ascii=False))
    except Exception as exc:  # noqa: BLE001 - the stream has started: report as an `error` event, keep the record
        if not state.recorded:
            state.error = f"{type(exc).__name__}: {exc}"[:500]
            await chat.record(prepared, state, outcome="server_error")
        yield ServerSentEvent(event="error", data=json.dumps({"message": "the reply failed; please try again"}))
    finally:
        try:
            if not state.recorded:  # cut short: the visitor left, or the server stopped after its grace period
                outcome = "shutdown" if shutdown.is_set() else "client_disconnected"
                await chat.record(prepared, state, outcome=outcome)
        finally:
            chat.open_turns -= 1


@router.post(
    "/chat/stream",
    response_class=EventSourceResponse,
    responses={
        **CHAT_ERRORS,
        **event_stream(
            "stage, sources, token..., then done (or error)", ("stage", "sources", "token", "done", "error")
        ),
    },
)
async def chat_stream(body: ChatRequest, chat: ChatDep, request: Request) -> EventSourceResponse:
    """Answer one visitor message as server-sent events: stage, sources, token..., done (or error)."""
    prepared = await _prepare(request, chat, body)
    shutdown = anyio.Event()  # set by sse-starlette on SIGTERM; the stream then gets most of the grace to finish
    grace = chat.settings.shutdown_grace_seconds * 0.7
    return EventSourceResponse(
        _events(chat, prepared, shutdown),
        ping=15,
        send_timeout=30,
        shutdown_event=shutdown,
        shutdown_grace_period=grace,
    )
