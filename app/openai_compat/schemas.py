"""Request and response bodies of POST /v1/chat/completions and GET /v1/models (the subset the guide honours)."""

from __future__ import annotations

import re
import time
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.chat.schemas import ID_PATTERN, MAX_MESSAGE_CHARS, VISITOR_ID_PATTERN, ChatRequest, Identity, PageContext

MODEL_ID = "journey-guide"
MODEL_CREATED = 1767225600  # 2026-01-01
TRUE = {"1", "true", "yes"}


class InputMessage(BaseModel):
    """One message of the conversation the client sends; only the last `user` message is answered."""

    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list | None = None

    def text(self) -> str:
        """The message's text (text parts of a multi-part content joined)."""
        if isinstance(self.content, str):
            return self.content
        parts = self.content or []
        texts = (p.get("text") for p in parts if isinstance(p, dict) and p.get("type") == "text")
        return "\n".join(t for t in texts if isinstance(t, str))


class CompletionRequest(BaseModel):
    """The body of POST /v1/chat/completions; OpenAI fields the guide does not use are accepted and ignored."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(MODEL_ID, max_length=200)
    messages: list[InputMessage] = Field(..., min_length=1, max_length=200)
    stream: bool = False
    stream_options: dict | None = None
    n: int | None = Field(None, ge=1, le=1, description="only one choice is ever produced")
    user: str | None = Field(None, pattern=VISITOR_ID_PATTERN, description="the visitor id")
    safety_identifier: str | None = Field(None, max_length=128)
    metadata: dict[str, str] | None = Field(None, description="conversation_id, page_url, page_title, known_customer…")

    @field_validator("metadata")
    @classmethod
    def _conversation_id(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        cid = (value or {}).get("conversation_id")
        if cid and not re.match(ID_PATTERN, cid):
            raise ValueError("metadata.conversation_id is not a conversation id")
        return value

    def visitor_id(self) -> str | None:
        """`user`, else a `safety_identifier` that is a valid visitor id."""
        if self.user:
            return self.user
        if self.safety_identifier and re.match(VISITOR_ID_PATTERN, self.safety_identifier):
            return self.safety_identifier
        return None

    def question(self) -> str:
        """The last message's text, which must come from the user."""
        last = self.messages[-1]
        if last.role != "user":
            raise ValueError("the last message must have role 'user': it is the visitor's message to answer")
        text = last.text().strip()
        if not text:
            raise ValueError("the last user message has no text")
        if len(text) > MAX_MESSAGE_CHARS:
            raise ValueError(f"the last user message is longer than {MAX_MESSAGE_CHARS} characters")
        return text

    def continues(self) -> bool:
        """True when the client sends earlier turns (an assistant message before the last user message)."""
        return any(m.role == "assistant" for m in self.messages[:-1])

    def signed_identity(self) -> Identity | None:
        """The identity `metadata.identity_signature` claims (id `user`, email, known_customer, identity_expires).

        Not yet verified; None when the request carries no signature.
        """
        meta = self.metadata or {}
        if not meta.get("identity_signature"):
            return None
        expires = meta.get("identity_expires", "")
        return Identity(
            id=self.visitor_id(),
            email=meta.get("email"),
            known_customer=meta.get("known_customer", "").lower() in TRUE,
            expires=int(expires) if expires.isdigit() else None,
            signature=meta["identity_signature"][:128],
        )

    def chat_request(
        self, conversation_id: str | None, *, trusted: bool, proven: Identity | None = None
    ) -> ChatRequest:
        """The visitor chat request this completion request amounts to.

        Identity metadata is believed only from a `trusted` caller; `proven` is the verified identity of `user`.
        """
        meta = self.metadata or {}
        page = None
        if meta.get("page_url") or meta.get("page_title"):
            page = PageContext(
                url=meta.get("page_url", ""), title=meta.get("page_title", ""), referrer=meta.get("page_referrer", "")
            )
        identity = proven
        known = meta.get("known_customer", "").lower() in TRUE
        if identity is None and trusted and (known or meta.get("email")):
            identity = Identity(known_customer=known, email=meta.get("email"))
        return ChatRequest(
            message=self.question(),
            conversation_id=conversation_id,
            visitor_id=self.visitor_id(),
            page=page,
            identity=identity,
        )


def journey_field(done: dict) -> dict:
    """The extra `journey` field: the guide's reply object without the reply text."""
    return {k: v for k, v in done.items() if k != "reply"}


def usage(question: str, reply: str) -> dict:
    """Approximate token counts (words); the offline guide has no tokenizer of its own."""
    prompt, completion = len(question.split()), len(reply.split())
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def completion(*, model: str, done: dict, question: str) -> dict:
    """A `chat.completion` object carrying the guide's reply and its journey metadata."""
    return {
        "id": f"chatcmpl-{done['message_id']}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": None,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": done["reply"], "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": usage(question, done["reply"]),
        "journey": journey_field(done),
    }


def chunk(*, completion_id: str, model: str, created: int, delta: dict | None, finish_reason=None, **extra) -> dict:
    """A `chat.completion.chunk`; `delta=None` makes the empty-choices chunk that carries usage."""
    choices = [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]
    return {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": None,
        "choices": choices,
        **extra,
    }


def models_list() -> dict:
    """GET /v1/models."""
    return {"object": "list", "data": [model_card()]}


def model_card() -> dict:
    """The one model the guide serves."""
    return {"id": MODEL_ID, "object": "model", "created": MODEL_CREATED, "owned_by": "journey-guide"}


class OpenAIErrorDetail(BaseModel):
    """What was wrong, as OpenAI clients read it."""

    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIErrorBody(BaseModel):
    """OpenAI's error shape."""

    error: OpenAIErrorDetail


def error_body(message: str, *, type: str = "invalid_request_error", code: str | None = None, param=None) -> dict:
    """OpenAI's error shape."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def openapi_body() -> dict:
    """The request body for the OpenAPI document (the endpoint parses it itself, to answer errors OpenAI's way)."""
    schema = CompletionRequest.model_json_schema()
    defs = schema.pop("$defs", {})

    def inline(node):
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return inline(defs[ref.removeprefix("#/$defs/")])
            return {k: inline(v) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    return {"requestBody": {"required": True, "content": {"application/json": {"schema": inline(schema)}}}}
