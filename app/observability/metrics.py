"""Prometheus metrics and GET /metrics (multi-process aware when PROMETHEUS_MULTIPROC_DIR is set)."""

from __future__ import annotations

import os
from collections.abc import Callable

from anyio import to_thread
from fastapi import APIRouter, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client import generate_latest as _generate_latest

disable_created_metrics()  # no `_created` series: half the lines, nothing a dashboard uses

SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0)
LLM_FAILURES = ("llm_error", "llm_timeout")

TURNS = Counter("journey_turns", "Visitor turns answered", ["stage", "mode", "outcome"])
TOUCHPOINTS = Counter("journey_touchpoints", "Touchpoints recorded", ["kind"])
TRANSITIONS = Counter("journey_stage_transitions", "Conversations moving between stages", ["from_stage", "to_stage"])
FALLBACKS = Counter("journey_fallbacks", "Turns answered offline because the LLM failed", ["reason"])
LLM_ERRORS = Counter("journey_llm_errors", "Failed LLM calls", ["call", "outcome"])
TURN_SECONDS = Histogram("journey_turn_seconds", "Whole turn, request to touchpoint", ["mode"], buckets=SECONDS)
PHASE_SECONDS = Histogram("journey_phase_seconds", "Time spent in one phase of a turn", ["phase"], buckets=SECONDS)
HTTP_REQUESTS = Counter("journey_http_requests", "HTTP requests answered", ["method", "route", "status"])
HTTP_SECONDS = Histogram(
    "journey_http_request_seconds", "HTTP request to last byte sent", ["method", "route"], buckets=SECONDS
)
WEBHOOK_BACKLOG = Gauge(
    "journey_webhook_backlog", "Webhook events waiting for delivery", ["status"], multiprocess_mode="max"
)
SPOOL_BACKLOG = Gauge(
    "journey_spool_backlog", "Touchpoints waiting in the spool for the database to come back", multiprocess_mode="max"
)
WEBHOOK_DELIVERIES = Counter("journey_webhook_deliveries", "Webhook delivery attempts", ["result"])
WEBHOOK_SECONDS = Histogram("journey_webhook_delivery_seconds", "One webhook request", buckets=SECONDS)

_backlog_source: Callable[[], dict[str, int]] | None = None

router = APIRouter(tags=["ops"])


def set_backlog_source(source: Callable[[], dict[str, int]] | None) -> None:
    """The function /metrics calls to read the webhook outbox counts."""
    global _backlog_source
    _backlog_source = source


def _label(value: object) -> str:
    return str(value) if value not in (None, "") else "none"


def observe_touchpoint(touchpoint) -> None:
    """Count one committed touchpoint: its turn, stage transition, fallback and latency."""
    kind = touchpoint.kind or "exchange"
    TOUCHPOINTS.labels(kind=kind).inc()
    if kind != "exchange":
        return
    mode, outcome = _label(touchpoint.mode), _label(touchpoint.outcome)
    TURNS.labels(stage=_label(touchpoint.stage), mode=mode, outcome=outcome).inc()
    if touchpoint.latency_ms is not None:
        TURN_SECONDS.labels(mode=mode).observe(touchpoint.latency_ms / 1000)
    if outcome in LLM_FAILURES:
        FALLBACKS.labels(reason=outcome).inc()
        LLM_ERRORS.labels(call="answer", outcome=outcome).inc()
    if touchpoint.stage_changed and touchpoint.previous_stage:
        TRANSITIONS.labels(from_stage=touchpoint.previous_stage, to_stage=_label(touchpoint.stage)).inc()


def generate_latest() -> bytes:
    """The exposition text: this process's registry, or every worker's with PROMETHEUS_MULTIPROC_DIR."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return _generate_latest(registry)
    return _generate_latest(REGISTRY)


def _refresh_backlog() -> None:
    if _backlog_source is None:
        return
    for status, count in _backlog_source().items():
        WEBHOOK_BACKLOG.labels(status=status).set(count)


@router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    """Prometheus exposition format."""
    await to_thread.run_sync(_refresh_backlog)
    return Response(await to_thread.run_sync(generate_latest), media_type=CONTENT_TYPE_LATEST)
