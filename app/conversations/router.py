"""Visitor conversation endpoints: GET /v1/conversations/{id}, POST .../feedback and .../handoff."""

from __future__ import annotations

from functools import partial
from typing import Annotated

from anyio import to_thread
from fastapi import APIRouter, HTTPException, Path, Query, Request

from app.chat.router import NOT_YOURS, VISITOR_ERRORS
from app.chat.schemas import ID_PATTERN, VISITOR_ID_PATTERN
from app.conversations.schemas import FeedbackIn, FeedbackOut, HandoffIn, HandoffOut, TranscriptOut
from app.conversations.service import MessageNotFound, give_feedback, read_transcript
from app.deps import ChatDep
from app.live.service import request_handoff
from app.security.ratelimit import rate_limits
from app.security.redact import redact
from app.store.service import ConversationNotFound

router = APIRouter(prefix="/v1/conversations", tags=["conversations"], responses=VISITOR_ERRORS)

ConversationId = Annotated[str, Path(pattern=ID_PATTERN)]
NOT_A_REPLY = "message not found in this conversation: message_id must be the message_id of one of its replies"


async def _run(call):
    try:
        return await to_thread.run_sync(call)
    except ConversationNotFound as exc:
        raise HTTPException(status_code=404, detail=NOT_YOURS) from exc
    except MessageNotFound as exc:
        raise HTTPException(status_code=404, detail=NOT_A_REPLY) from exc


@router.get("/{conversation_id}", response_model=TranscriptOut)
async def transcript(
    conversation_id: ConversationId,
    visitor_id: Annotated[str, Query(pattern=VISITOR_ID_PATTERN)],
    chat: ChatDep,
    request: Request,
) -> dict:
    """The visitor's own transcript: each question, reply, stage, sources and feedback."""
    await rate_limits(request).check_read(request)
    return await _run(
        partial(read_transcript, sessions=chat.sessions, conversation_id=conversation_id, visitor_id=visitor_id)
    )


@router.post("/{conversation_id}/feedback", response_model=FeedbackOut, status_code=201)
async def feedback(conversation_id: ConversationId, body: FeedbackIn, chat: ChatDep, request: Request) -> dict:
    """Record a thumbs up or down on one reply."""
    await rate_limits(request).check(request, body.visitor_id)
    if chat.settings.redact_pii and body.comment:
        body = body.model_copy(update={"comment": redact(body.comment)})
    return await _run(partial(give_feedback, sessions=chat.sessions, conversation_id=conversation_id, body=body))


@router.post("/{conversation_id}/handoff", response_model=HandoffOut, status_code=201)
async def handoff(conversation_id: ConversationId, body: HandoffIn, chat: ChatDep, request: Request) -> dict:
    """Ask for a person (docs/live-handoff.md): waiting, or unavailable outside office hours; idempotent."""
    await rate_limits(request).check(request, body.visitor_id)
    if chat.settings.redact_pii and body.message:
        body = body.model_copy(update={"message": redact(body.message)})
    call = partial(
        request_handoff,
        sessions=chat.sessions,
        settings=chat.settings,
        conversation_id=conversation_id,
        visitor_id=body.visitor_id,
        reason=body.reason,
        message=body.message,
        email=body.email,
        page=body.page.as_record() if body.page else None,
    )
    out = await _run(call)
    await request.app.state.live.notify(conversation_id)
    return out
