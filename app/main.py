"""The FastAPI app factory."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from anyio import to_thread
from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse

from app.chat.router import router as chat_router
from app.config import Settings
from app.conversations.router import router as conversations_router
from app.deps import ServicesDep
from app.errors import BodySizeLimit, document_errors, error_responses, install_error_handlers
from app.kb.router import router as knowledge_admin_router
from app.kb.store import KnowledgeUnavailable
from app.live.desk import open_desk
from app.live.router import staff_router as live_staff_router
from app.live.router import visitor_router as live_visitor_router
from app.observability.logs import configure_logging
from app.observability.memory import limit_arenas, trim_loop
from app.observability.metrics import router as metrics_router
from app.observability.middleware import RequestContext
from app.openai_compat.router import router as openai_router
from app.proactive.router import router as proactive_router
from app.security.headers import SecurityHeaders
from app.security.retention import retention_loop
from app.staff.page import router as staff_page_router
from app.staff.router import router as staff_router
from app.store.spool import install_database_errors, replay_loop
from app.webhooks.sender import WebhookSender
from app.widget.router import router as widget_router

log = logging.getLogger(__name__)
DRAIN_SECONDS = 10.0
TRIM_SECONDS = 5.0  # how often to look whether a burst of turns ended (then the freed heap goes back)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; clients and models are created by the lifespan, not at import time."""
    settings = settings or Settings()
    configure_logging(settings)
    limit_arenas(2)  # before the worker threads start (app/observability/memory.py)
    webhooks = WebhookSender(settings)  # refuses webhook URLs without a signing secret

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from app.state import build_services

        services = await to_thread.run_sync(build_services, settings)
        app.state.services = services
        retention = (
            asyncio.create_task(retention_loop(services.chat.sessions, settings.retention_days))
            if settings.retention_days
            else None
        )
        spooled = asyncio.create_task(replay_loop(services.chat.spool, services.chat.sessions))  # app/store/spool.py
        trimming = asyncio.create_task(trim_loop(services.chat, TRIM_SECONDS))  # memory back after a burst
        await webhooks.start(services.chat.sessions)
        live = await open_desk(app, services)  # live handoff: bus and unclaimed-request sweep
        try:
            yield
        finally:
            # uvicorn has cancelled what outlived the grace period: let those turns write their touchpoints
            if left := await services.chat.drain(DRAIN_SECONDS):
                log.error("shutdown: %d turns still unrecorded after %ss", left, DRAIN_SECONDS)
            await live.close()
            spooled.cancel()
            trimming.cancel()
            if retention is not None:
                retention.cancel()
            await webhooks.stop()
            services.close()

    app = FastAPI(title="Journey Guide", version="0.1.0", lifespan=lifespan)
    install_error_handlers(app)
    install_database_errors(app)  # 503, not 500, while the database is unreachable

    @app.exception_handler(KnowledgeUnavailable)
    async def knowledge_unavailable(_request: Request, exc: KnowledgeUnavailable) -> JSONResponse:
        """503 with the reason when the Chroma server is down (a load balancer takes the worker out via /health)."""
        return JSONResponse(status_code=503, content={"detail": str(exc)}, headers={"Retry-After": "5"})

    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(SecurityHeaders, hsts=settings.hsts)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_methods=["GET", "POST"],
        allow_headers=["content-type", "last-event-id"],
    )
    app.add_middleware(RequestContext)  # outermost: request id, HTTP metrics, access log
    app.include_router(chat_router)
    app.include_router(conversations_router)
    app.include_router(live_visitor_router)
    app.include_router(widget_router)
    app.include_router(proactive_router)
    app.include_router(openai_router)
    app.include_router(metrics_router)
    app.include_router(staff_router)
    app.include_router(live_staff_router)
    app.include_router(staff_page_router)
    app.include_router(knowledge_admin_router)

    @app.get("/health", tags=["ops"], responses=error_responses((503, "the knowledge base cannot be read")))
    async def health(services: ServicesDep) -> dict:
        """Liveness and what the service runs on; 503 when the knowledge base cannot be read.

        `knowledge.stale` is true while the collection changed but could not be read again: turns are answered from
        the copy read before.
        """
        knowledge = await to_thread.run_sync(services.kb.check)
        return {
            "status": "ok",
            "mode": "llm" if settings.llm_enabled else "offline",
            "llm_model": settings.llm_name if settings.llm_enabled else None,
            "embedding_model": services.kb.embeddings.name,
            "knowledge": {"collection": services.kb.name, **knowledge},
            "stages": services.journey.names,
        }

    document_errors(app)  # 400, 413, 415 and 422 wherever the app's shared layers answer them
    return app
