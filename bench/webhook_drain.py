"""How fast the webhook sender drains a backlog into a local receiver, and what the outbox adds to a touchpoint."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import anyio
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from conftest import free_port  # noqa: E402
from webhook_receiver import Receiver  # noqa: E402

from app.config import Settings  # noqa: E402
from app.store.db import make_engine, make_sessionmaker  # noqa: E402
from app.store.service import ExchangeRecord, record_exchange  # noqa: E402
from app.webhooks.outbox import install_outbox  # noqa: E402
from app.webhooks.sender import WebhookSender  # noqa: E402


def record(sessions, i: int) -> None:
    stage = {"name": "decision", "confidence": 0.8, "evidence": [], "scores": {}, "previous": None}
    exchange = ExchangeRecord(
        id=f"bench-{i:07d}",
        conversation_id=f"bench-conv-{i:07d}",
        visitor_id="bench-visitor",
        question="How much does the pro plan cost?",
        reply="The Pro plan costs $29 per staff calendar per month. [1]" * 4,
        stage=stage,
        sources=[{"id": "pricing/plans", "title": "Plans", "url": "https://x.example/p", "snippet": "…" * 100}],
        suggestions=["Is there a trial?"],
        page=None,
        identity=None,
        retrieval_score=0.7,
        mode="offline",
        model="offline-composer",
        latency_ms=20,
    )
    with sessions() as session:
        record_exchange(session=session, record=exchange)


def write(data_dir: Path, n: int, urls: str) -> tuple[float, object]:
    settings = Settings(data_dir=data_dir, webhook_urls=urls, webhook_secret="bench-secret-0123456789")
    engine = make_engine(settings)
    sessions = make_sessionmaker(engine)
    if urls:
        install_outbox(sessions, settings)
    started = time.perf_counter()
    for i in range(n):
        record(sessions, i)
    return (time.perf_counter() - started) / n * 1000, (settings, sessions, engine)


async def drain(settings: Settings, sessions) -> None:
    sender = WebhookSender(settings)
    sender.sessions = sessions
    async with httpx.AsyncClient(timeout=5) as client:
        while sender.backlog()["pending"]:
            await sender.deliver_due(client)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as plain_dir, tempfile.TemporaryDirectory() as hooked_dir:
        plain_ms, (_, _, plain_engine) = write(Path(plain_dir), args.events, "")
        plain_engine.dispose()
        port = free_port()
        hooked_ms, (settings, sessions, engine) = write(Path(hooked_dir), args.events, f"http://127.0.0.1:{port}/h")
        print(f"record_exchange without webhooks: {plain_ms:.2f} ms per touchpoint")
        print(f"record_exchange with the outbox:  {hooked_ms:.2f} ms per touchpoint")
        with Receiver(port) as receiver:
            started = time.perf_counter()
            anyio.run(drain, settings, sessions)
            elapsed = time.perf_counter() - started
        engine.dispose()
        sent = len(receiver.accepted)
        print(f"drained {sent} events in {elapsed:.2f}s: {sent / elapsed:.0f} events/s")


if __name__ == "__main__":
    main()
