"""POST /v1/chat/completions (plain and streamed) and GET /v1/models, as OpenAI clients expect them."""

from __future__ import annotations

import hmac
import json
import logging
import time
from collections.abc import AsyncIterator
from functools import partial

from anyio import to_thread
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from sse_starlette import EventSourceResponse, ServerSentEvent

from app.chat.schemas import Identity
from app.chat.service import ChatService, ConversationFull, Prepared, TurnState
from app.config import Settings
from app.deps import ChatDep
from app.errors import error_responses, event_stream
from app.openai_compat import schemas
from app.openai_compat.service import conversation_for
from app.security.identity import IdentityError, verify
from app.security.ratelimit import rate_limits
from app.store.service import ConversationNotFound

KEY_REFUSED = (
    401,
    "JOURNEY_API_KEYS is set and the bearer key is missing or wrong, or the signed identity was refused",
)
router = APIRouter(
    prefix="/v1", tags=["openai-compatible"], responses=error_responses(KEY_REFUSED, model=schemas.OpenAIErrorBody)
)
COMPLETION_ERRORS = error_responses(
    (400, "the body is not valid JSON or not a valid request (the last message must be the user's)"),
    (404, "metadata.conversation_id is not a conversation of `user`"),
    (409, "the conversation reached JOURNEY_MAX_TURNS"),
    (429, "over a rate limit (Retry-After)"),
    (503, "the reply failed; the turn is recorded (Retry-After)"),
    model=schemas.OpenAIErrorBody,
)
log = logging.getLogger(__name__)

NOT_YOURS = (
    "conversation not found for this visitor: send the `user` the conversation was started with, "
    "or leave metadata.conversation_id out to start a new one"
)


ERROR_TYPES = {401: "authentication_error", 429: "rate_limit_error", 503: "server_error"}


class OpenAIError(Exception):
    """An error answered in OpenAI's shape."""

    def __init__(
        self, status: int, message: str, *, code: str | None = None, param: str | None = None, headers=None
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.param, self.headers = status, message, code, param, headers

    def response(self) -> JSONResponse:
        """The JSON error response."""
        kind = ERROR_TYPES.get(self.status, "invalid_request_error")
        body = schemas.error_body(self.message, type=kind, code=self.code, param=self.param)
        return JSONResponse(body, status_code=self.status, headers=self.headers)


def _authorize(request: Request, settings: Settings) -> bool:
    """Check the bearer key when JOURNEY_API_KEYS is set; True when the caller is thus a trusted server."""
    keys = [k.strip() for k in settings.api_keys.split(",") if k.strip()]
    if not keys:
        return False
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    given = given.strip() if scheme.lower() == "bearer" else ""
    if not given or not any(hmac.compare_digest(given.encode(), key.encode()) for key in keys):
        raise OpenAIError(401, "invalid or missing API key (Authorization: Bearer <key>)", code="invalid_api_key")
    return True


def _proven_identity(body: schemas.CompletionRequest, settings: Settings, trusted: bool) -> Identity | None:
    """The verified identity of `user`: vouched for by an API key, or signed by the host (identity_signature)."""
    meta = body.metadata or {}
    if trusted and body.visitor_id():
        known = meta.get("known_customer", "").lower() in schemas.TRUE
        vouched = Identity(id=body.visitor_id(), email=meta.get("email"), known_customer=known)
        return vouched.model_copy(update={"verified": True})
    claimed = body.signed_identity()
    if claimed is None:
        return None
    if not body.visitor_id():
        raise OpenAIError(400, "metadata.identity_signature signs `user`: send it", param="user")
    if not settings.identity_secret:
        raise OpenAIError(401, "JOURNEY_IDENTITY_SECRET is not set: a signed identity cannot be verified here")
    try:
        verify(claimed.model_dump(), settings.identity_secret)
    except IdentityError as exc:
        raise OpenAIError(401, f"identity refused: {exc}", param="metadata.identity_signature") from exc
    return claimed.model_copy(update={"verified": True})


def _describe(exc: ValidationError) -> tuple[str, str | None]:
    error = exc.errors()[0]
    param = ".".join(str(p) for p in error.get("loc", ()))
    return f"{param}: {str(error.get('msg', 'invalid value')).removeprefix('Value error, ')}", param or None


async def _parse(request: Request, chat: ChatService, trusted: bool) -> tuple[schemas.CompletionRequest, Prepared]:
    try:
        payload = json.loads(await request.body())
    except ValueError as exc:
        raise OpenAIError(400, "the request body is not valid JSON") from exc
    try:
        body = schemas.CompletionRequest.model_validate(payload)
        body.question()
    except ValidationError as exc:
        message, param = _describe(exc)
        raise OpenAIError(400, message, param=param) from exc
    except ValueError as exc:
        raise OpenAIError(400, str(exc), param="messages") from exc
    if not trusted:  # an anonymous caller is held to the visitor API's limits; a keyed server is not
        try:
            await rate_limits(request).check(request, body.visitor_id())
        except HTTPException as exc:
            raise OpenAIError(429, exc.detail, code="rate_limit_exceeded", headers=exc.headers) from exc
    proven = _proven_identity(body, chat.settings, trusted)
    find = partial(conversation_for, sessions=chat.sessions, body=body, proven=proven is not None)
    conversation_id = await to_thread.run_sync(find)
    try:
        prepared = await chat.prepare(body.chat_request(conversation_id, trusted=trusted, proven=proven))
    except ValidationError as exc:
        message, param = _describe(exc)
        raise OpenAIError(400, message, param=param) from exc
    except ConversationNotFound as exc:
        raise OpenAIError(404, NOT_YOURS, code="conversation_not_found", param="metadata.conversation_id") from exc
    except ConversationFull as exc:
        message = f"this conversation reached {exc.args[0]} turns: leave metadata.conversation_id out to start anew"
        raise OpenAIError(409, message, code="conversation_full", param="metadata.conversation_id") from exc
    return body, prepared


@router.post(
    "/chat/completions",
    response_model=None,
    openapi_extra=schemas.openapi_body(),
    responses={
        **COMPLETION_ERRORS,
        **event_stream("the completion, or its chunks then [DONE] when `stream` is true", json_too=True),
    },
)
async def chat_completions(request: Request, chat: ChatDep) -> JSONResponse | EventSourceResponse:
    """Answer the last user message as the guide; `journey` carries stage, sources, suggestions and ids."""
    try:
        trusted = _authorize(request, chat.settings)
        body, prepared = await _parse(request, chat, trusted)
    except OpenAIError as exc:
        return exc.response()
    if body.stream:
        include_usage = bool((body.stream_options or {}).get("include_usage"))
        return EventSourceResponse(_chunks(chat, prepared, body.model, include_usage), ping=15, send_timeout=30)
    try:
        done = await chat.answer(prepared)  # a turn that fails is still recorded (outcome server_error)
    except Exception:  # noqa: BLE001 - answered in OpenAI's shape; the client may retry
        log.exception("turn %s failed", prepared.message_id)
        return OpenAIError(503, "the reply failed; please try again", headers={"Retry-After": "5"}).response()
    return JSONResponse(schemas.completion(model=body.model, done=done, question=prepared.request.message))


def _data(payload: dict | str) -> ServerSentEvent:
    return ServerSentEvent(data=payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False))


async def _chunks(chat: ChatService, p: Prepared, model: str, include_usage: bool) -> AsyncIterator[ServerSentEvent]:
    state = TurnState()
    make = partial(schemas.chunk, completion_id=f"chatcmpl-{p.message_id}", model=model, created=int(time.time()))
    ids = {"conversation_id": p.conversation_id, "visitor_id": p.visitor_id, "message_id": p.message_id}
    streamed = ""
    try:
        async for name, data in chat.run(p, state):
            if name == "stage":
                yield _data(make(delta={"role": "assistant", "content": ""}, journey={**ids, "stage": data}))
            elif name == "token":
                streamed += data["text"]
                yield _data(make(delta={"content": data["text"]}))
            elif name == "done":
                journey = schemas.journey_field(data)
                if data["reply"].startswith(streamed):
                    rest = data["reply"][len(streamed) :]
                else:  # the LLM failed mid-answer: the grounded offline answer follows what was sent
                    rest = "\n\n" + data["reply"]
                    journey.update(reply_replaced=True, reply=data["reply"])
                if rest:
                    yield _data(make(delta={"content": rest}))
                yield _data(make(delta={}, finish_reason="stop", journey=journey))
                if include_usage:
                    yield _data(make(delta=None, usage=schemas.usage(p.request.message, data["reply"])))
        yield _data("[DONE]")
    except Exception as exc:  # noqa: BLE001 - the stream has started: report in OpenAI's shape, keep the record
        if not state.recorded:
            state.error = f"{type(exc).__name__}: {exc}"[:500]
            await chat.record(p, state, outcome="server_error")
        yield _data(schemas.error_body("the reply failed; please try again", type="server_error"))
    finally:
        if not state.recorded:
            await chat.record(p, state, outcome="client_disconnected")


@router.get("/models")
async def models(request: Request, chat: ChatDep) -> JSONResponse:
    """The one model this server answers as (any `model` string is accepted by chat completions)."""
    try:
        _authorize(request, chat.settings)
    except OpenAIError as exc:
        return exc.response()
    return JSONResponse(schemas.models_list())


@router.get("/models/{model_id}")
async def model(model_id: str, request: Request, chat: ChatDep) -> JSONResponse:
    """One model card; any id is answered as the guide."""
    try:
        _authorize(request, chat.settings)
    except OpenAIError as exc:
        return exc.response()
    return JSONResponse({**schemas.model_card(), "id": model_id})
