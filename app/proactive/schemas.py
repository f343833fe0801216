"""Request and response bodies of the proactive message endpoints."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from app.chat.schemas import ID_PATTERN, VISITOR_ID_PATTERN, PageContext


class ProactiveIn(BaseModel):
    """Who asks, from which page, after how long on it and on which visit."""

    model_config = ConfigDict(extra="ignore")

    visitor_id: str = Field(..., pattern=VISITOR_ID_PATTERN)
    conversation_id: str | None = Field(None, pattern=ID_PATTERN, description="the widget's current conversation")
    page: PageContext
    seconds_on_page: float = Field(..., ge=0, le=86400, description="how long the page has been open")
    visits: int = Field(1, ge=1, le=1_000_000, description="the visitor's visits to the site, this one included")


class MessageOut(BaseModel):
    """The message to show now: recorded as shown (an `id` to open or dismiss it) in `conversation_id`."""

    id: str
    rule: str
    text: str
    chips: list[str]
    conversation_id: str


class ProactiveOut(BaseModel):
    """A message to show, or none (with the seconds after which one could match on this page, if any)."""

    message: MessageOut | None
    retry_after: float | None = Field(None, description="ask again after this many seconds on the page")


class ActionIn(BaseModel):
    """The visitor the message was shown to."""

    model_config = ConfigDict(extra="ignore")

    visitor_id: str = Field(..., pattern=VISITOR_ID_PATTERN)


class ActionOut(BaseModel):
    """The recorded opening or dismissal."""

    id: str
    rule: str | None
    action: Literal["open", "dismiss"]
    conversation_id: str
