"""The long-lived parts of a running service, built once by the app's lifespan or the CLI."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from app.answer.chat_model import ChatModelAnswerer, load_chat_model
from app.answer.llm import LLMAnswerer
from app.answer.prompts import load_guidance
from app.chat.service import ChatService
from app.config import Settings
from app.embeddings import VectorCache, make_embeddings
from app.kb.store import KnowledgeBase, make_chroma_client
from app.observability.instrument import observe_chat
from app.proactive.rules import Rule, load_rules
from app.staff.learning import Learning
from app.stages.config import JourneyConfig, load_journey
from app.stages.detector import EnsembleStageDetector
from app.stages.llm import ChatModelStageClassifier, LLMStageClassifier
from app.store.db import make_engine, make_sessionmaker
from app.webhooks.outbox import install_outbox


@dataclass
class Services:
    """Everything a request handler may use."""

    settings: Settings
    journey: JourneyConfig
    kb: KnowledgeBase
    engine: Engine
    chat: ChatService
    proactive_rules: tuple[Rule, ...] = ()  # knowledge/proactive.yaml

    def close(self) -> None:
        """Stop listening for learning notices; release database connections."""
        if self.chat.learning is not None:
            self.chat.learning.close()
        self.engine.dispose()


def build_knowledge_base(settings: Settings, embeddings=None) -> KnowledgeBase:
    """The Chroma-backed knowledge base with the configured embeddings."""
    return KnowledgeBase(
        client=make_chroma_client(settings),
        embeddings=embeddings or make_embeddings(settings),
        prefix=settings.collection,
        reopen=lambda: make_chroma_client(settings, fresh=True),
    )


def build_llm(
    settings: Settings, journey: JourneyConfig
) -> tuple[LLMAnswerer | ChatModelAnswerer | None, LLMStageClassifier | ChatModelStageClassifier | None]:
    """The answerer and the stage classifier (None unless JOURNEY_LLM_STAGE) of the configured LLM, or None, None.

    JOURNEY_LLM: any LangChain chat model (LLMConfigError when it cannot be built); else OPENAI_API_KEY or
    OPENAI_BASE_URL: the OpenAI-compatible client, the faster path.
    """
    if not settings.llm_enabled:
        return None, None
    if settings.llm:
        chat_model = load_chat_model(settings)
        stage = ChatModelStageClassifier(settings, journey, chat_model) if settings.llm_stage else None
        return ChatModelAnswerer(settings, chat_model), stage
    return LLMAnswerer(settings), LLMStageClassifier(settings, journey) if settings.llm_stage else None


def build_services(settings: Settings) -> Services:
    """Build clients, models and the database in the order they depend on each other."""
    journey = load_journey(settings.knowledge_dir / "stages.yaml")
    llm, stage_llm = build_llm(settings, journey)  # first: a JOURNEY_LLM that cannot be used stops startup at once
    proactive_rules = load_rules(settings.knowledge_dir / "proactive.yaml", journey.names)
    kb = build_knowledge_base(settings)
    kb.catalog()  # loads the in-memory copy of the collection now, not in the first visitor's turn
    engine = make_engine(settings)
    detector = EnsembleStageDetector(journey, kb.embeddings, cache_dir=settings.data_dir / "cache")
    sessions = make_sessionmaker(engine)
    vectors = VectorCache(kb.embeddings)
    learning = Learning(
        sessions=sessions,
        detector=detector,
        vectors=vectors,
        threshold=settings.curated_threshold,
        poll_seconds=settings.learning_poll_seconds,
    )
    learning.refresh(force=True)
    learning.listen(settings.redis_url)  # other workers' corrections and curated answers arrive at once
    chat = ChatService(
        settings=settings,
        journey=journey,
        kb=kb,
        detector=detector,
        sessions=sessions,
        vectors=vectors,
        llm=llm,
        stage_llm=stage_llm,
        learning=learning,
        guidance=load_guidance(settings.knowledge_dir / "stages.yaml"),
    )
    install_outbox(chat.sessions, settings)  # each new touchpoint writes its webhook events in its transaction
    observe_chat(chat)  # metrics and a log line per touchpoint, phase timings
    return Services(
        settings=settings, journey=journey, kb=kb, engine=engine, chat=chat, proactive_rules=proactive_rules
    )
