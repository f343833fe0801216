"""Live handoff endpoints: the visitor's stream, typing and contact; the staff queue, stream, claim and messages."""

from __future__ import annotations

from typing import Annotated, Literal

from anyio import to_thread
from fastapi import APIRouter, Header, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sse_starlette import EventSourceResponse

from app.chat.router import NOT_YOURS, VISITOR_ERRORS
from app.chat.schemas import ID_PATTERN, MAX_MESSAGE_CHARS, NOT_BLANK, SPACE, VISITOR_ID_PATTERN
from app.conversations.schemas import EMAIL_SCHEMA, valid_email
from app.errors import error_responses, event_stream
from app.live import queue, service, stream
from app.live.desk import LiveDesk
from app.live.models import CLOSED, RETURNED, STATUSES
from app.security.ratelimit import Limit, open_stream_slot, rate_limits
from app.staff.auth import STAFF_ERRORS, Editor, StaffUser, Viewer
from app.store.service import ConversationNotFound

visitor_router = APIRouter(prefix="/v1/conversations", tags=["live"], responses=VISITOR_ERRORS)
staff_router = APIRouter(prefix="/v1/staff", tags=["live"], responses=STAFF_ERRORS)

ConversationId = Annotated[str, Path(pattern=ID_PATTERN)]
VisitorId = Annotated[str, Query(pattern=VISITOR_ID_PATTERN)]
LastEventId = Annotated[str | None, Header(alias="last-event-id")]
After = Annotated[int | None, Query(ge=0, le=2**53, description="resume after this event id")]
TYPING_LIMIT = Limit(120, 60)
NO_REQUEST = "no open handoff request for this conversation"
# documented in the schema; the handler checks it with a clearer message
STATUS_LIST = r"^[{1},]*({0})([{1}]*,[{1},]*({0}))*[{1},]*$".format("|".join(STATUSES), SPACE)
NO_CLAIM = error_responses(
    (404, NO_REQUEST),
    (409, "another staff member holds it, or it is not claimed (error: already_claimed or not_claimed)"),
)
LIVE_EVENTS = event_stream(
    "live events (docs/live-handoff.md), a `: ping` comment every 15 s",
    (*queue.QUEUE_STATUS, "agent.message", "visitor.message", "typing", "queue", "note"),
)


def desk_of(request: Request) -> LiveDesk:
    """The process's live desk (built by the lifespan)."""
    return request.app.state.live


def _staff(user: StaffUser) -> service.Staff:
    return service.Staff(token_id=user.token_id, name=user.name)


async def _run(call):
    try:
        return await to_thread.run_sync(call)
    except ConversationNotFound as exc:
        raise HTTPException(404, NOT_YOURS) from exc
    except service.NoOpenRequest as exc:
        raise HTTPException(404, NO_REQUEST) from exc


def _conflict(code: str, message: str, agent: str | None) -> JSONResponse:
    return JSONResponse(status_code=409, content={"error": code, "detail": message, "agent": agent})


class ContactIn(BaseModel):
    """The visitor's email for a request no one could take."""

    model_config = ConfigDict(extra="ignore")

    visitor_id: str = Field(..., pattern=VISITOR_ID_PATTERN)
    email: str = Field(..., max_length=254, json_schema_extra=EMAIL_SCHEMA)

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        value = value.strip()
        if not valid_email(value):
            raise ValueError("not a valid email address")
        return value


class VisitorTypingIn(BaseModel):
    """The visitor started or stopped typing."""

    model_config = ConfigDict(extra="ignore")

    visitor_id: str = Field(..., pattern=VISITOR_ID_PATTERN)
    typing: bool


class FollowUpIn(BaseModel):
    """The conversation's status once the follow-up is done: resolved (the default) or pending (awaiting a reply)."""

    status: Literal["resolved", "pending"] = "resolved"


class TypingIn(BaseModel):
    """The staff member started or stopped typing."""

    typing: bool


class MessageIn(BaseModel):
    """A staff member's message to the visitor."""

    text: str = Field(..., max_length=MAX_MESSAGE_CHARS, json_schema_extra=NOT_BLANK)

    @field_validator("text")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("text must not be empty")
        return value


# -- visitor ---------------------------------------------------------------------------------------------------


@visitor_router.post("/{conversation_id}/contact")
async def contact(conversation_id: ConversationId, body: ContactIn, request: Request) -> dict:
    """The visitor's email for a handoff no one could take now (sent in a handoff.contact webhook event)."""
    await rate_limits(request).check(request, body.visitor_id)
    desk = desk_of(request)
    out = await _run(
        lambda: service.give_contact(
            sessions=desk.sessions, conversation_id=conversation_id, visitor_id=body.visitor_id, email=body.email
        )
    )
    await desk.bus.publish({"type": "queue", "conversation_id": conversation_id, "status": out["status"]})
    return out


@visitor_router.get("/{conversation_id}/live", response_class=EventSourceResponse, responses=LIVE_EVENTS)
async def visitor_stream(
    conversation_id: ConversationId,
    visitor_id: VisitorId,
    request: Request,
    after: After = None,
    last_event_id: LastEventId = None,
):
    """The conversation's live events as server-sent events (resume with Last-Event-ID or ?after)."""
    await rate_limits(request).check_read(request)
    desk = desk_of(request)
    start = await _run(
        lambda: queue.visitor_start(sessions=desk.sessions, conversation_id=conversation_id, visitor_id=visitor_id)
    )
    resume = stream.resume_point(last_event_id, after)
    slot = open_stream_slot(request, visitor_id)  # nothing between here and the response can fail
    return stream.respond(
        desk,
        after=start if resume is None else resume,
        conversation_id=conversation_id,
        staff=False,
        ended=lambda: rate_limits(request).streams.give_back(slot),
    )


@visitor_router.post("/{conversation_id}/typing", status_code=204)
async def visitor_typing(conversation_id: ConversationId, body: VisitorTypingIn, request: Request) -> Response:
    """Tell the staff member the visitor is typing (not stored)."""
    limits = rate_limits(request)
    if await limits.counter.hit(f"typing:{body.visitor_id}", TYPING_LIMIT) is not None:
        raise HTTPException(429, "too many typing notices from this visitor", headers={"Retry-After": "5"})
    desk = desk_of(request)
    await _run(
        lambda: queue.visitor_start(sessions=desk.sessions, conversation_id=conversation_id, visitor_id=body.visitor_id)
    )
    await desk.bus.publish(
        {"type": "typing", "conversation_id": conversation_id, "who": "visitor", "typing": body.typing}
    )
    return Response(status_code=204)


# -- staff -----------------------------------------------------------------------------------------------------


@staff_router.get("/handoffs")
async def handoffs(
    user: Viewer,
    request: Request,
    status: Annotated[
        str, Query(max_length=100, json_schema_extra={"pattern": STATUS_LIST})
    ] = "waiting,unavailable,live",
) -> dict:
    """Handoff requests with these statuses, newest first, with the visitor's stage, journey, page and transcript."""
    wanted = tuple(dict.fromkeys(s.strip() for s in status.split(",") if s.strip()))
    unknown = [s for s in wanted if s not in STATUSES]
    if unknown or not wanted:
        raise HTTPException(422, f"status must be a comma-separated list of {', '.join(STATUSES)}; got {status!r}")
    desk = desk_of(request)
    return {"handoffs": await _run(lambda: queue.queue(sessions=desk.sessions, statuses=wanted))}


@staff_router.get("/live", response_class=EventSourceResponse, responses=LIVE_EVENTS)
async def staff_stream(user: Viewer, request: Request, after: After = None, last_event_id: LastEventId = None):
    """Every conversation's live events, and `queue` events when a request changes state (server-sent events)."""
    desk = desk_of(request)
    resume = stream.resume_point(last_event_id, after)
    if resume is None:
        resume = await to_thread.run_sync(lambda: queue.last_event_id(sessions=desk.sessions))
    return stream.respond(desk, after=resume, conversation_id=None, staff=True)


@staff_router.post("/handoffs/{conversation_id}/claim", responses=NO_CLAIM)
async def claim(conversation_id: ConversationId, user: Editor, request: Request):
    """Take the conversation: the visitor sees the staff member join; the bot goes silent."""
    desk = desk_of(request)
    try:
        out = await _run(
            lambda: service.claim(sessions=desk.sessions, conversation_id=conversation_id, staff=_staff(user))
        )
    except service.AlreadyClaimed as exc:
        return _conflict(
            "already_claimed", f"{exc.agent or 'another staff member'} already took this conversation", exc.agent
        )
    await desk.notify(conversation_id)
    return out


@staff_router.post("/conversations/{conversation_id}/messages", status_code=201, responses=NO_CLAIM)
async def message(conversation_id: ConversationId, body: MessageIn, user: Editor, request: Request):
    """Send the visitor a message (only the staff member holding the conversation)."""
    desk = desk_of(request)
    call = lambda: service.agent_message(  # noqa: E731
        sessions=desk.sessions, conversation_id=conversation_id, staff=_staff(user), text=body.text
    )
    try:
        event = await _run(call)
    except service.NotClaimed as exc:
        return _conflict("not_claimed", "claim this conversation before writing to the visitor", exc.agent)
    await desk.notify(conversation_id)
    return event


@staff_router.post("/conversations/{conversation_id}/typing", status_code=204, responses=NO_CLAIM)
async def staff_typing(conversation_id: ConversationId, body: TypingIn, user: Editor, request: Request):
    """Tell the visitor the staff member is typing (not stored; only the one holding the conversation)."""
    desk = desk_of(request)
    holds = await to_thread.run_sync(
        lambda: service.is_holder(sessions=desk.sessions, conversation_id=conversation_id, staff=_staff(user))
    )
    if not holds:
        return _conflict("not_claimed", "claim this conversation first", None)
    notice = {"type": "typing", "conversation_id": conversation_id, "who": "agent", "name": user.name}
    await desk.bus.publish({**notice, "typing": body.typing})
    return Response(status_code=204)


async def _end(conversation_id: str, user: StaffUser, request: Request, outcome: str):
    desk = desk_of(request)
    call = lambda: service.end(  # noqa: E731
        sessions=desk.sessions, conversation_id=conversation_id, staff=_staff(user), outcome=outcome
    )
    try:
        out = await _run(call)
    except service.NotClaimed as exc:
        return _conflict("not_claimed", f"{exc.agent or 'another staff member'} holds this conversation", exc.agent)
    await desk.notify(conversation_id)
    return out


FOLLOW_UP_ERRORS = error_responses(
    (404, NO_REQUEST), (409, "the request is waiting or live, not a follow-up task (error: not_a_follow_up)")
)


@staff_router.post("/handoffs/{conversation_id}/follow-up", responses=FOLLOW_UP_ERRORS)
async def follow_up(conversation_id: ConversationId, user: Editor, request: Request, body: FollowUpIn | None = None):
    """Mark a follow-up task (a request nobody took) done: the request closes, the conversation becomes resolved."""
    desk = desk_of(request)
    status = body.status if body else "resolved"
    call = lambda: service.follow_up(  # noqa: E731
        sessions=desk.sessions, conversation_id=conversation_id, staff=_staff(user), status=status
    )
    try:
        out = await _run(call)
    except service.NotAFollowUp as exc:
        detail = f"this request is {exc.status}, not a follow-up task: claim it or close it"
        return _conflict("not_a_follow_up", detail, None)
    await desk.notify(conversation_id)
    return out


@staff_router.post("/handoffs/{conversation_id}/release", responses=NO_CLAIM)
async def release(conversation_id: ConversationId, user: Editor, request: Request):
    """Hand the conversation back to the bot."""
    return await _end(conversation_id, user, request, RETURNED)


@staff_router.post("/handoffs/{conversation_id}/close", responses=NO_CLAIM)
async def close(conversation_id: ConversationId, user: Editor, request: Request):
    """Close the handoff (the visitor is told; the bot answers any later message)."""
    return await _end(conversation_id, user, request, CLOSED)
