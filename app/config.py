"""Settings read from the environment (prefix JOURNEY_; OPENAI_* as the openai client reads them)."""

from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.live.hours import office_zone, parse_office_hours

REPO_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """All configuration of one Journey Guide process."""

    model_config = SettingsConfigDict(env_prefix="JOURNEY_", env_file=".env", extra="ignore")

    data_dir: Path = Path("./data")
    database_url: str | None = None
    chroma_url: str | None = None
    knowledge_dir: Path = REPO_ROOT / "knowledge"
    prompts_dir: Path = REPO_ROOT / "prompts"
    collection: str = "journey-knowledge"
    company_name: str = "Lumio"

    embedding_model: str = Field(
        "local",
        description="'local' (the packaged MiniLM), 'local-int8q' (MiniLM computing in int8) or 'openai:<model>'",
    )
    embedding_threads: int = Field(2, ge=1, le=64, description="onnxruntime threads for one local embedding call")
    llm: str | None = Field(
        None,
        description="provider:model of any chat model LangChain's init_chat_model knows (anthropic:claude-sonnet-4-5, "
        "ollama:llama3.1...), or python:module:factory; unset: the OpenAI-compatible client (OPENAI_*, llm_model)",
    )
    llm_options: dict[str, Any] = Field(
        default_factory=dict, description="JSON object of extra arguments for the JOURNEY_LLM chat model (base_url...)"
    )
    llm_model: str = "gpt-4o-mini"
    llm_timeout: float = Field(20.0, gt=0, description="seconds for a whole LLM call")
    llm_token_timeout: float = Field(8.0, gt=0, description="seconds allowed between two streamed tokens")
    llm_max_tokens: int = Field(600, gt=0)
    llm_max_retries: int = Field(1, ge=0, le=5)
    llm_temperature: float = Field(0.2, ge=0, le=2)
    llm_stage: bool = Field(True, description="with an LLM configured, let it vote on the journey stage")
    llm_stage_weight: float = Field(0.5, ge=0, le=5, description="weight of the LLM's stage vote in the ensemble")
    llm_stage_timeout: float = Field(4.0, gt=0)
    llm_stage_below: float = Field(
        0.7,
        ge=0,
        le=1.01,
        description="ask for the LLM's stage vote only below this detector confidence (1.01: on every LLM turn)",
    )

    openai_api_key: str | None = Field(None, validation_alias=AliasChoices("OPENAI_API_KEY"))
    openai_base_url: str | None = Field(None, validation_alias=AliasChoices("OPENAI_BASE_URL"))

    retrieval_k: int = Field(4, ge=1, le=20)
    retrieval_min_score: float = Field(
        0.30, description="cosine similarity below which the knowledge base is considered not to know"
    )
    stage_boost: float = Field(0.05, ge=0, description="score bonus for passages tagged with the visitor's stage")
    curated_threshold: float = Field(
        0.85, ge=0, le=1, description="similarity at which a staff-written answer replaces the generated one"
    )
    learning_poll_seconds: float = Field(
        5.0, gt=0, description="seconds between checks for staff corrections made on other workers (Redis: at once)"
    )
    ingest_max_bytes: int = Field(10_000_000, ge=1024, description="largest file or fetched page ingestion reads")
    ingest_root: Path | None = Field(None, description="folder the admin ingest endpoint may read (default: knowledge)")
    crawl_allow_hosts: str = Field("", description="hosts crawled even on private addresses, comma-separated")
    crawl_max_pages: int = Field(200, ge=1, description="pages fetched per crawl")
    crawl_max_depth: int = Field(3, ge=0, description="links followed from the start page or the sitemap's pages")
    crawl_max_seconds: float = Field(300.0, gt=0, description="seconds a whole crawl may take")
    crawl_timeout: float = Field(15.0, gt=0, description="seconds for one whole request of a crawl")

    max_body_bytes: int = Field(64 * 1024, ge=1024)
    max_turns: int = Field(200, ge=1, description="turns after which a conversation must start afresh")
    redis_url: str | None = Field(
        None, description="redis://host:6379/0: rate limits and change notices shared by every worker"
    )
    rate_limit_ip: str = Field("60/60", description="chat requests per client IP: COUNT/SECONDS")
    rate_limit_visitor: str = Field("20/60", description="chat requests per visitor id: COUNT/SECONDS")
    rate_limit_reads: str = Field("120/60", description="transcripts, suggestions, live streams per IP: COUNT/SECONDS")
    live_streams_per_ip: int = Field(20, ge=1, description="visitor /live streams open at once from one client IP")
    live_streams_per_visitor: int = Field(4, ge=1, description="visitor /live streams open at once per visitor id")
    staff_auth_limit: str = Field("20/300", description="wrong staff tokens per client IP, then a pause: COUNT/SECONDS")
    trust_forwarded_for: bool = Field(False, description="take the client IP from X-Forwarded-For (behind a proxy)")
    identity_secret: str | None = Field(None, description="HMAC-SHA256 key the host site signs visitor identities with")
    identity_enforce: bool = Field(False, description="refuse identities without a valid signature")
    redact_pii: bool = Field(False, description="replace emails, phone and card numbers before storing touchpoints")
    retention_days: int | None = Field(None, ge=1, description="delete touchpoints older than this many days")
    link_hosts: str = Field("", description="extra hosts LLM replies may link to, besides the knowledge base's")
    hsts: bool = Field(False, description="send Strict-Transport-Security (only behind HTTPS)")
    proactive: bool = Field(True, description="offer proactive messages by the rules of knowledge/proactive.yaml")
    widget_origins: str = Field(
        "*", description="origins whose pages may call the visitor API (the widget): * or a comma-separated list"
    )

    webhook_urls: str = Field("", description="comma-separated URLs that receive one signed JSON event per touchpoint")
    webhook_secret: str | None = Field(None, description="HMAC-SHA256 key signing every webhook request")
    webhook_timeout: float = Field(10.0, gt=0, description="seconds for one webhook request")
    webhook_backoff_base: float = Field(2.0, gt=0, description="seconds before the first retry of a failed event")
    webhook_backoff_max: float = Field(300.0, gt=0, description="longest wait between two retries")
    webhook_max_age_hours: float = Field(72.0, gt=0, description="an event still undelivered after this is failed")
    webhook_poll_interval: float = Field(1.0, gt=0, description="seconds between two looks at the outbox")
    webhook_retention_days: float = Field(7.0, ge=0, description="delivered events are purged after this")
    api_keys: str = Field("", description="comma-separated keys /v1/chat/completions and /v1/models require")
    log_format: str = Field("json", pattern="^(json|text)$", description="server logs: one JSON object a line, or text")
    shutdown_grace_seconds: float = Field(
        10.0, ge=0, description="on SIGTERM, seconds open requests and streams get to finish before they are cut"
    )
    office_hours: str = Field("", description="when staff can join a chat, e.g. 'mon-fri 09:00-17:30; sat 10:00-14:00'")
    office_timezone: str = Field("UTC", description="IANA time zone of the office hours, e.g. Europe/Paris")
    handoff_wait_seconds: float = Field(120.0, gt=0, description="seconds before an unclaimed handoff is unavailable")

    @field_validator("office_hours")
    @classmethod
    def _office_hours(cls, value: str) -> str:
        parse_office_hours(value)
        return value.strip()

    @field_validator("office_timezone")
    @classmethod
    def _office_timezone(cls, value: str) -> str:
        office_zone(value.strip())
        return value.strip()

    @field_validator("llm")
    @classmethod
    def _llm(cls, value: str | None) -> str | None:
        value = (value or "").strip() or None
        provider, _, model = (value or "").partition(":")
        if value and not (provider.strip() and model.strip()):
            raise ValueError(f"JOURNEY_LLM must be provider:model, e.g. anthropic:claude-sonnet-4-5, got {value!r}")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        value = (value or "").strip() or None
        if value and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"JOURNEY_REDIS_URL must look like redis://host:6379/0, got {value!r}")
        return value

    @property
    def llm_enabled(self) -> bool:
        """True when an LLM is configured: JOURNEY_LLM, or an OpenAI-compatible key or base URL."""
        return bool(self.llm or self.openai_api_key or self.openai_base_url)

    @property
    def llm_name(self) -> str:
        """The model touchpoints and /health name: JOURNEY_LLM as set, or the OpenAI-compatible model."""
        return self.llm or self.llm_model

    @property
    def cors_origins(self) -> list[str]:
        """JOURNEY_WIDGET_ORIGINS as a list for the CORS middleware."""
        return [o.strip().rstrip("/") for o in self.widget_origins.split(",") if o.strip()]

    @cached_property
    def sqlalchemy_url(self) -> str:
        """The touchpoint database: JOURNEY_DATABASE_URL or SQLite under the data dir."""
        if self.database_url:  # postgres:// and postgresql:// use psycopg 3
            for scheme in ("postgres://", "postgresql://"):
                if self.database_url.startswith(scheme):
                    return "postgresql+psycopg://" + self.database_url[len(scheme) :]
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'journey.db').resolve()}"

    @property
    def chroma_path(self) -> Path:
        """Where the embedded Chroma keeps its files."""
        return self.data_dir / "chroma"

    @property
    def docs_dir(self) -> Path:
        """The default folder `journey ingest` reads."""
        return self.knowledge_dir / "docs"
