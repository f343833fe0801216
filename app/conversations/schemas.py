"""Request and response bodies of the visitor conversation endpoints."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.chat.schemas import ID_PATTERN, MAX_MESSAGE_CHARS, SPACE, VISITOR_ID_PATTERN, PageContext, SourceOut

ADDRESS = rf"""[^@{SPACE}<>"']{{1,64}}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{{2,}}"""
EMAIL = re.compile(f"^{ADDRESS}$")
EMAIL_SCHEMA = {"pattern": f"^[{SPACE}]*{ADDRESS}[{SPACE}]*$"}  # documented; the validator's message says what is wrong


def valid_email(value: str) -> bool:
    """True for a plausible address (something@domain.tld)."""
    return bool(EMAIL.match(value))


class FeedbackIn(BaseModel):
    """A visitor's thumbs up or down on one reply."""

    model_config = ConfigDict(extra="ignore")

    visitor_id: str = Field(..., pattern=VISITOR_ID_PATTERN)
    message_id: str = Field(..., pattern=ID_PATTERN)
    rating: Literal["up", "down"]
    comment: str | None = Field(None, max_length=2000)


class FeedbackOut(BaseModel):
    """The stored feedback."""

    conversation_id: str
    message_id: str
    rating: str
    status: str = "recorded"


class HandoffIn(BaseModel):
    """A visitor asking for a person; anonymous visitors give an email."""

    model_config = ConfigDict(extra="ignore")

    visitor_id: str = Field(..., pattern=VISITOR_ID_PATTERN)
    email: str | None = Field(
        None, max_length=254, json_schema_extra={"pattern": f"^[{SPACE}]*({ADDRESS})?[{SPACE}]*$"}
    )
    message: str | None = Field(None, max_length=MAX_MESSAGE_CHARS)
    page: PageContext | None = None
    reason: Literal["visitor", "api"] = Field("visitor", description="api: asked by the host page's code, not a click")

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        value = (value or "").strip()
        if not value:
            return None
        if not valid_email(value):
            raise ValueError("not a valid email address")
        return value

    @field_validator("message")
    @classmethod
    def _message(cls, value: str | None) -> str | None:
        return (value or "").strip() or None


class HandoffOut(BaseModel):
    """The request's status and what happens next, in words for the visitor (docs/live-handoff.md)."""

    conversation_id: str
    status: Literal["waiting", "unavailable", "live"]
    email: str | None
    next_steps: str
    event_id: int | None = Field(None, description="the handoff.requested live event: the visitor stream starts there")


class TurnOut(BaseModel):
    """One exchange of a transcript, with the visitor's latest feedback on it."""

    message_id: str
    question: str
    reply: str
    stage: str | None
    sources: list[SourceOut]
    suggestions: list[str]
    feedback: Literal["up", "down"] | None
    outcome: str
    created_at: datetime


class HandoffState(BaseModel):
    """The latest handoff of a conversation."""

    email: str | None
    created_at: datetime


class LiveState(BaseModel):
    """The live handoff: bot, waiting, unavailable, live or closed; who holds it; its email; every live event."""

    status: str
    agent: str | None
    email: str | None
    events: list[dict]


class TranscriptOut(BaseModel):
    """A visitor's own conversation, to restore the widget after a reload."""

    conversation_id: str
    visitor_id: str
    stage: str | None
    turns: list[TurnOut]
    handoff: HandoffState | None
    live: LiveState
