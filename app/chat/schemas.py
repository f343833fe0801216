"""Request and response bodies of the visitor chat API."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlparse

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_MESSAGE_CHARS = 4000
ID_PATTERN = r"^[A-Za-z0-9_-]{8,64}$"
VISITOR_ID_PATTERN = r"^[A-Za-z0-9_.:-]{8,128}$"
# what str.strip() removes, spelled out: JSON Schema's (ECMAScript's) \s is a different set
SPACE = r"\t\n\v\f\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
NOT_BLANK = {"pattern": f"[^{SPACE}]"}  # documented; the validators' own messages say what is wrong
MAX_UTM_PARAMS = 10


class PageContext(BaseModel):
    """The page the visitor is on."""

    model_config = ConfigDict(extra="ignore")

    url: str = Field("", max_length=2048)
    title: str = Field("", max_length=512)
    referrer: str = Field("", max_length=2048)
    utm: dict[str, str] = Field({}, description="utm_* parameters the visitor landed with, if the URL has none")

    @field_validator("utm")
    @classmethod
    def _only_utm(cls, value: dict[str, str]) -> dict[str, str]:
        kept = {k[:40]: v[:200] for k, v in value.items() if k.startswith("utm_")}
        return dict(list(kept.items())[:MAX_UTM_PARAMS])

    def utm_params(self) -> dict[str, str]:
        """utm_* parameters of the page URL, else those the visitor landed with."""
        query = urlparse(self.url).query
        return {k: v[:200] for k, v in parse_qsl(query) if k.startswith("utm_")} or self.utm

    def as_record(self) -> dict:
        """What a touchpoint stores about the page."""
        return {"url": self.url, "title": self.title, "referrer": self.referrer, "utm": self.utm_params()}


class Identity(BaseModel):
    """What the host page says about the visitor."""

    model_config = ConfigDict(extra="ignore")

    known_customer: bool = False
    id: str | None = Field(None, max_length=200)
    email: str | None = Field(None, max_length=320)
    name: str | None = Field(None, max_length=200)
    plan: str | None = Field(None, max_length=100)
    expires: int | None = Field(None, description="Unix seconds after which the signature is refused")
    signature: str | None = Field(None, max_length=128, description="hex HMAC-SHA256 computed on the host's server")
    verified: bool = Field(False, description="set by the server: the signature checked out")

    @field_validator("verified", mode="before")
    @classmethod
    def _server_decides(cls, _value: object) -> bool:
        return False


class ChatRequest(BaseModel):
    """A visitor message."""

    model_config = ConfigDict(extra="ignore")

    message: str = Field(
        ..., max_length=MAX_MESSAGE_CHARS, description="the visitor's message", json_schema_extra=NOT_BLANK
    )
    conversation_id: str | None = Field(None, pattern=ID_PATTERN)
    visitor_id: str | None = Field(None, pattern=VISITOR_ID_PATTERN)
    page: PageContext | None = None
    identity: Identity | None = None

    @field_validator("message")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("message must not be empty")
        return value


class StageOut(BaseModel):
    """The journey stage of a turn."""

    name: str
    confidence: float
    evidence: list[dict]
    scores: dict[str, float] = {}
    previous: str | None = None
    uncertain: bool = Field(False, description="the detector is unsure of this turn: it kept the conversation's stage")


class SourceOut(BaseModel):
    """A knowledge base passage the reply cites."""

    id: str
    title: str
    url: str
    snippet: str


class HandoffOut(BaseModel):
    """Whether the bot suggests a person take over, and why (with `requested` and `status` once one was asked)."""

    model_config = ConfigDict(extra="allow")

    suggested: bool
    reason: str | None = None


class ChatResponse(BaseModel):
    """The reply to one visitor message."""

    conversation_id: str
    visitor_id: str
    message_id: str
    reply: str
    stage: StageOut
    sources: list[SourceOut]
    suggestions: list[str]
    handoff: HandoffOut
    mode: str
    model: str | None
    outcome: str
    latency_ms: int
    next_steps: str | None = Field(
        None, description="when the guide asked for a person itself: what happens next, as the stream's done event says"
    )
