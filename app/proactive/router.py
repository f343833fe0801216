"""POST /v1/proactive (the message for this visitor now, if any) and POST /v1/proactive/{id}/open|dismiss."""

from __future__ import annotations

from functools import partial
from typing import Annotated, Literal

from anyio import to_thread
from fastapi import APIRouter, HTTPException, Path, Request

from app.chat.router import NOT_YOURS
from app.chat.schemas import ID_PATTERN
from app.deps import ServicesDep
from app.errors import error_responses
from app.proactive.schemas import ActionIn, ActionOut, ProactiveIn, ProactiveOut
from app.proactive.service import ShowingNotFound, decide, record_action
from app.security.ratelimit import rate_limits
from app.store.service import ConversationNotFound

NOT_SHOWN = "no proactive message with this id was shown to this visitor"
router = APIRouter(
    prefix="/v1/proactive",
    tags=["widget"],
    responses=error_responses((404, "the conversation or the message is not this visitor's"), 429, 503),
)


@router.post("", response_model=ProactiveOut)
async def proactive(body: ProactiveIn, services: ServicesDep, request: Request) -> dict:
    """The first rule matching the visitor's journey, page, time on page and visit, never shown to them before.

    The showing is recorded (a `proactive_shown` touchpoint) when a message is returned; with none, `retry_after`
    says when a rule that only needs more time on the page could match. Empty when JOURNEY_PROACTIVE is off.
    """
    await rate_limits(request).check_read(request)
    if not services.settings.proactive or not services.proactive_rules:
        return {"message": None, "retry_after": None}
    call = partial(
        decide,
        sessions=services.chat.sessions,
        journey=services.journey,
        rules=services.proactive_rules,
        visitor_id=body.visitor_id,
        conversation_id=body.conversation_id,
        page=body.page.as_record(),
        seconds_on_page=body.seconds_on_page,
        visits=body.visits,
    )
    try:
        return await to_thread.run_sync(call)
    except ConversationNotFound as exc:
        raise HTTPException(status_code=404, detail=NOT_YOURS) from exc


@router.post("/{message_id}/{action}", response_model=ActionOut, status_code=201)
async def act(
    message_id: Annotated[str, Path(pattern=ID_PATTERN)],
    action: Literal["open", "dismiss"],
    body: ActionIn,
    services: ServicesDep,
    request: Request,
) -> dict:
    """Record that the visitor opened (clicked, or opened the chat while it showed) or dismissed the message."""
    await rate_limits(request).check(request, body.visitor_id)
    call = partial(
        record_action, sessions=services.chat.sessions, shown_id=message_id, visitor_id=body.visitor_id, action=action
    )
    try:
        return await to_thread.run_sync(call)
    except ShowingNotFound as exc:
        raise HTTPException(status_code=404, detail=NOT_SHOWN) from exc
