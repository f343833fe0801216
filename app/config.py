"""Settings read from the environment (prefix JOURNEY_; OPENAI_* as the openai client reads them)."""

from functools import cached_property
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

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
        description="'local' (MiniLM int8 on onnxruntime) or 'openai:<model>' e.g. openai:text-embedding-3-small",
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

    max_body_bytes: int = Field(64 * 1024, ge=1024)
    widget_origins: str = Field(
        "*", description="origins whose pages may call the visitor API (the widget): * or a comma-separated list"
    )

    @property
    def llm_enabled(self) -> bool:
        """True when an OpenAI-compatible LLM is configured (a key or a base URL)."""
        return bool(self.openai_api_key or self.openai_base_url)

    @property
    def cors_origins(self) -> list[str]:
        """JOURNEY_WIDGET_ORIGINS as a list for the CORS middleware."""
        return [o.strip().rstrip("/") for o in self.widget_origins.split(",") if o.strip()]

    @cached_property
    def sqlalchemy_url(self) -> str:
        """The touchpoint database: JOURNEY_DATABASE_URL or SQLite under the data dir."""
        if self.database_url:
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
