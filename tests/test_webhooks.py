"""Touchpoint events to webhooks: outbox in the touchpoint's transaction, claims, signatures, retries, delivery."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import anyio
import httpx
import jsonschema
import pytest
from conftest import REPO, Server, base_env, free_port
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from webhook_receiver import Receiver

from app.config import Settings
from app.staff.auth import create_token
from app.staff.inbox import set_assignee, set_status
from app.store.db import make_engine, make_sessionmaker
from app.store.models import Conversation, Touchpoint, utcnow
from app.store.service import ExchangeRecord, get_conversation, record_event, record_exchange
from app.webhooks import outbox, signing
from app.webhooks.events import STAGE_TRANSITION, TOUCHPOINT_CREATED, event_id
from app.webhooks.models import OutboxEvent
from app.webhooks.sender import WebhookSender, backoff

SECRET = "test-secret-0123456789"
SCHEMA = json.loads((REPO / "docs" / "webhook-event.schema.json").read_text())
FAST = {
    "JOURNEY_WEBHOOK_SECRET": SECRET,
    "JOURNEY_WEBHOOK_BACKOFF_BASE": "0.2",
    "JOURNEY_WEBHOOK_BACKOFF_MAX": "1",
    "JOURNEY_WEBHOOK_POLL_INTERVAL": "0.2",
    "JOURNEY_WEBHOOK_TIMEOUT": "3",
}


def settings_for(data_dir: Path, urls: str, **extra) -> Settings:
    return Settings(data_dir=data_dir, webhook_urls=urls, webhook_secret=SECRET, **extra)


def exchange(sessions, *, id: str, conversation: str, stage: str, previous: str | None = None) -> None:
    record = ExchangeRecord(
        id=id,
        conversation_id=conversation,
        visitor_id="visitor-0001",
        question=f"question {id}",
        reply=f"reply {id}",
        stage={"name": stage, "confidence": 0.8, "evidence": [], "scores": {}, "previous": previous},
        sources=[{"id": "pricing/plans", "title": "Plans", "url": "https://x.example/p", "snippet": "…"}],
        suggestions=["Is there a trial?"],
        page={"url": "https://www.lumio.example/pricing", "title": "Pricing", "referrer": "", "utm": {}},
        identity={"known_customer": True, "email": "ann@example.com"},
        retrieval_score=0.7,
        mode="offline",
        model="offline-composer",
        latency_ms=12,
    )
    with sessions() as session:
        record_exchange(session=session, record=record)


def valid(request: dict) -> bool:
    headers = request["headers"]
    return signing.verify(SECRET, request["body"], headers["x-journey-signature"], headers["x-journey-timestamp"])


@pytest.fixture()
def store(tmp_path: Path):
    """A fresh database whose sessions write outbox rows for two webhook URLs."""
    settings = settings_for(tmp_path, "http://127.0.0.1:9/a, http://127.0.0.1:9/b")
    engine = make_engine(settings)
    sessions = make_sessionmaker(engine)
    outbox.install_outbox(sessions, settings)
    yield sessions
    engine.dispose()


def test_signature_verifies_and_rejects_tampering_and_old_timestamps():
    body = b'{"id":"evt_1"}'
    now = int(time.time())
    signature = signing.sign(SECRET, now, body)
    assert signature.startswith("sha256=") and len(signature) == 7 + 64
    assert signing.verify(SECRET, body, signature, str(now))
    assert not signing.verify(SECRET, body + b" ", signature, str(now))
    assert not signing.verify("another-secret-0123456", body, signature, str(now))
    assert not signing.verify(SECRET, body, signing.sign(SECRET, now - 3600, body), str(now - 3600))


def test_backoff_grows_exponentially_is_capped_and_jittered():
    rng = random.Random(7)
    waits = [backoff(n, base=2, cap=300, rng=rng) for n in range(1, 15)]
    assert 1 <= waits[0] <= 2 and 2 <= waits[1] <= 4 and 4 <= waits[2] <= 8
    assert all(150 <= w <= 300 for w in waits[8:]), waits
    assert len({round(w, 3) for w in waits}) == len(waits), "jitter spreads retries"


def test_an_hour_long_outage_is_retried_not_given_up():
    """With the defaults a receiver that is down for an hour is retried at most 5 minutes apart, and nothing expires."""
    defaults = Settings()
    elapsed, attempts = 0.0, 0
    while elapsed < 3600:
        attempts += 1
        wait = backoff(attempts, base=defaults.webhook_backoff_base, cap=defaults.webhook_backoff_max)
        assert wait <= defaults.webhook_backoff_max
        elapsed += wait
    assert defaults.webhook_max_age_hours * 3600 > elapsed + defaults.webhook_backoff_max
    assert attempts < 40, "a down receiver is probed, not hammered"


def test_refuses_webhook_urls_without_a_secret(tmp_path):
    with pytest.raises(outbox.WebhookConfigError, match="JOURNEY_WEBHOOK_SECRET"):
        WebhookSender(Settings(data_dir=tmp_path, webhook_urls="http://127.0.0.1:9/hook", webhook_secret=None))
    with pytest.raises(outbox.WebhookConfigError, match="not an http"):
        WebhookSender(Settings(data_dir=tmp_path, webhook_urls="ftp://x/hook", webhook_secret=SECRET))
    assert not WebhookSender(Settings(data_dir=tmp_path)).enabled


def test_server_will_not_start_with_webhooks_and_no_secret(tmp_path):
    env = base_env(tmp_path, JOURNEY_WEBHOOK_URLS="http://127.0.0.1:9/hook")
    result = subprocess.run(
        [sys.executable, "-m", "app", "serve", "--port", str(free_port())],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "JOURNEY_WEBHOOK_SECRET" in result.stdout + result.stderr


def test_each_touchpoint_writes_its_events_in_the_same_transaction(store):
    exchange(store, id="tp-first-0001", conversation="conversation-01", stage="decision")
    exchange(store, id="tp-second-001", conversation="conversation-01", stage="support", previous="decision")
    with store() as session:
        conversation = get_conversation(session=session, conversation_id="conversation-01", visitor_id="visitor-0001")
        data = {"rating": "down", "message_id": "tp-second-001", "comment": None}
        record_event(session=session, conversation=conversation, id="tp-feedback-1", kind="feedback", data=data)
        rows = session.scalars(select(OutboxEvent).order_by(OutboxEvent.id)).all()
    keys = {(r.event_type, r.url) for r in rows}
    assert len(rows) == 2 * 4, "3 touchpoints + 1 transition, for each of 2 URLs"
    assert {url for _, url in keys} == {"http://127.0.0.1:9/a", "http://127.0.0.1:9/b"}
    bodies = {r.event_id: json.loads(r.body) for r in rows}
    for body in bodies.values():
        jsonschema.validate(body, SCHEMA)
    assert set(bodies) == {
        event_id(TOUCHPOINT_CREATED, "tp-first-0001"),
        event_id(TOUCHPOINT_CREATED, "tp-second-001"),
        event_id(TOUCHPOINT_CREATED, "tp-feedback-1"),
        event_id(STAGE_TRANSITION, "tp-second-001"),
    }
    transition = bodies[event_id(STAGE_TRANSITION, "tp-second-001")]["data"]
    assert (transition["from"], transition["to"], transition["turn"]) == ("decision", "support", 2)
    assert transition["identity"]["email"] == "ann@example.com"
    first = bodies[event_id(TOUCHPOINT_CREATED, "tp-first-0001")]["data"]  # its conversation is new in the same flush
    assert first["turn"] == 1 and first["identity"]["email"] == "ann@example.com"
    feedback = bodies[event_id(TOUCHPOINT_CREATED, "tp-feedback-1")]["data"]
    assert feedback["kind"] == "feedback" and feedback["data"]["rating"] == "down" and feedback["turn"] == 3


def test_status_and_assignee_changes_send_conversation_events(store):
    exchange(store, id="tp-inbox-0001", conversation="conversation-02", stage="support")
    with store() as session:
        create_token(session=session, name="ann@lumio.example", role="editor")
        set_status(session=session, conversation_id="conversation-02", status="resolved", until=None, by="ann")
        set_assignee(session=session, conversation_id="conversation-02", assignee="ann@lumio.example", by="ann")
    exchange(store, id="tp-inbox-0002", conversation="conversation-02", stage="support")  # reopens it
    with store() as session:
        rows = session.scalars(select(OutboxEvent).where(OutboxEvent.url == "http://127.0.0.1:9/a")).all()
    bodies = [json.loads(r.body) for r in sorted(rows, key=lambda r: r.id)]
    for body in bodies:
        jsonschema.validate(body, SCHEMA)
    inbox = [(b["type"], b["data"].get("status"), b["data"]["by"]) for b in bodies if b["type"].startswith("conv")]
    assert inbox == [
        ("conversation.status", "resolved", "ann"),
        ("conversation.assigned", None, "ann"),
        ("conversation.status", "open", "visitor"),
    ]
    assigned = next(b["data"] for b in bodies if b["type"] == "conversation.assigned")
    assert (assigned["assignee"], assigned["previous"], assigned["identity"]["email"]) == (
        "ann@lumio.example",
        None,
        "ann@example.com",
    )


def test_a_touchpoint_that_fails_or_rolls_back_leaves_no_event(store):
    with store() as session:
        session.add(Touchpoint(id="tp-no-conversation", conversation_id="nowhere-0001", visitor_id="v", turn=1))
        with pytest.raises(IntegrityError):
            session.flush()
        session.rollback()
        session.add(Conversation(id="conversation-rb", visitor_id="v"))
        session.add(Touchpoint(id="tp-rolled-back", conversation_id="conversation-rb", visitor_id="v", turn=1))
        session.flush()
        assert len(session.scalars(select(OutboxEvent)).all()) == 2, "written with the touchpoint"
        session.rollback()
        assert session.scalars(select(OutboxEvent)).all() == []


def test_two_senders_never_hold_the_same_row(store):
    for i in range(30):
        exchange(store, id=f"tp-claim-{i:04d}", conversation=f"conversation-{i:03d}", stage="decision")
    taken: list[list[int]] = [[], []]

    def sender(n: int) -> None:
        while True:
            with store() as session:
                claimed = outbox.claim(session=session, url="http://127.0.0.1:9/a", limit=3, worker=f"w{n}", lease=60)
                if not claimed.rows:
                    return
                taken[n].extend(row.id for row in claimed.rows)
                delivered = [(row.id, 200) for row in claimed.rows]
                assert outbox.settle(session=session, token=claimed.token, delivered=delivered) == len(delivered)

    threads = [threading.Thread(target=sender, args=(n,)) for n in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    everything = taken[0] + taken[1]
    assert len(everything) == len(set(everything)) == 30, "each row sent once, none twice"
    with store() as session:
        assert outbox.counts(session=session, urls=["http://127.0.0.1:9/a"])["pending"] == 0
        assert outbox.counts(session=session, urls=["http://127.0.0.1:9/b"])["pending"] == 30


def test_sender_retries_a_refusing_receiver_and_delivers_in_order(tmp_path):
    port = free_port()
    settings = settings_for(
        tmp_path, f"http://127.0.0.1:{port}/hooks/journey", webhook_backoff_base=0.01, webhook_backoff_max=0.05
    )
    engine = make_engine(settings)
    sessions = make_sessionmaker(engine)
    outbox.install_outbox(sessions, settings)
    for i in range(5):
        exchange(sessions, id=f"tp-order-{i:04d}", conversation="conversation-ord", stage="decision")

    async def drain(sender: WebhookSender) -> None:
        await sender.start(sessions)
        await sender.stop()  # only the one-pass API below is used
        async with httpx.AsyncClient(timeout=2) as client:
            deadline = time.monotonic() + 20
            while sender.backlog()["pending"] and time.monotonic() < deadline:
                await sender.deliver_due(client)
                await anyio.sleep(0.02)

    with Receiver(port, refuse=3, drop_ack=1) as receiver:
        anyio.run(drain, WebhookSender(settings))
    engine.dispose()
    assert len(receiver.requests) >= 5 + 3 + 1
    assert all(valid(r) for r in receiver.requests)
    ids = [r["headers"]["x-journey-event-id"] for r in receiver.accepted]
    unique = list(dict.fromkeys(ids))
    assert unique == [event_id(TOUCHPOINT_CREATED, f"tp-order-{i:04d}") for i in range(5)], "sent in order"
    assert len(ids) == 6, "the unacknowledged event came again, with the same key"


def test_receiver_down_then_up_gets_every_event_once_by_key(make_data_dir):
    """Events written before the server starts and while the receiver is down all arrive, signed and valid."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/hooks/journey"
    data_dir = make_data_dir()
    earlier = settings_for(data_dir, url)  # a previous process that stopped with events still in its outbox
    engine = make_engine(earlier)
    sessions = make_sessionmaker(engine)
    outbox.install_outbox(sessions, earlier)
    exchange(sessions, id="tp-before-start", conversation="conversation-old", stage="decision")
    engine.dispose()

    server = Server(data_dir, JOURNEY_WEBHOOK_URLS=url, **FAST)
    try:
        first = httpx.post(f"{server.url}/v1/chat", json={"message": "How much does the pro plan cost?"}, timeout=60)
        ids = {k: first.json()[k] for k in ("conversation_id", "visitor_id")}
        httpx.post(
            f"{server.url}/v1/chat",
            json={"message": "My Google calendar stopped syncing, bookings are missing", **ids},
            timeout=60,
        ).raise_for_status()
        feedback = {"visitor_id": ids["visitor_id"], "message_id": first.json()["message_id"], "rating": "up"}
        cid = ids["conversation_id"]
        httpx.post(f"{server.url}/v1/conversations/{cid}/feedback", json=feedback, timeout=30).raise_for_status()
        handoff = {"visitor_id": ids["visitor_id"], "email": "ann@example.com", "message": "call me"}
        httpx.post(f"{server.url}/v1/conversations/{cid}/handoff", json=handoff, timeout=30).raise_for_status()
        time.sleep(1.5)  # several failed attempts against nothing listening
        metrics = httpx.get(f"{server.url}/metrics", timeout=30).text
        assert 'journey_webhook_backlog{status="pending"} 7.0' in metrics, metrics

        touchpoints = server.touchpoints()
        expected = {event_id(TOUCHPOINT_CREATED, t["id"]) for t in touchpoints}
        expected |= {event_id(STAGE_TRANSITION, t["id"]) for t in touchpoints if t["stage_changed"]}
        expected |= {event_id("handoff.requested", t["id"]) for t in touchpoints if t["kind"] == "handoff"}
        assert len(touchpoints) == 5 and len(expected) == 7, touchpoints

        with Receiver(port, refuse=2, drop_ack=2) as receiver:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                arrived = {r["headers"]["x-journey-event-id"] for r in receiver.accepted}
                if arrived >= expected and 'pending"} 0.0' in httpx.get(f"{server.url}/metrics", timeout=30).text:
                    break
                time.sleep(0.2)
        by_key: dict[str, list[bytes]] = {}
        for request in receiver.accepted:
            assert request["path"] == "/hooks/journey"
            assert valid(request), "every request carries a valid signature"
            body = json.loads(request["body"])
            jsonschema.validate(body, SCHEMA)
            assert body["id"] == request["headers"]["x-journey-event-id"]
            assert body["type"] == request["headers"]["x-journey-event-type"]
            by_key.setdefault(body["id"], []).append(request["body"])
        assert set(by_key) == expected, "every event arrived"
        assert all(len(set(bodies)) == 1 for bodies in by_key.values()), "a redelivery is byte-identical"
        kinds = sorted(json.loads(b[0])["data"].get("kind", json.loads(b[0])["type"]) for b in by_key.values())
        assert kinds == [
            *["exchange"] * 3,
            *["feedback", "handoff", "handoff.requested", "stage.transition"],
        ]
        assert 'journey_webhook_deliveries_total{result="delivered"} 7.0' in httpx.get(f"{server.url}/metrics").text
    finally:
        server.stop()


def test_old_delivered_and_given_up_events_are_purged(store):
    for i in range(3):
        exchange(store, id=f"tp-purge-{i:04d}", conversation=f"conversation-p{i}", stage="decision")
    long_ago = utcnow() - timedelta(days=30)
    with store() as session:
        rows = session.scalars(select(OutboxEvent).order_by(OutboxEvent.id)).all()
        rows[0].status, rows[0].delivered_at = "delivered", long_ago
        rows[1].status, rows[1].next_attempt_at = "failed", long_ago
        rows[2].status, rows[2].delivered_at = "delivered", utcnow()
        session.commit()
        assert outbox.purge(session=session, older_than=timedelta(days=7)) == 2
        assert outbox.counts(session=session) == {"pending": 3, "delivered": 1, "failed": 0}
        assert outbox.retry_failed(session=session) == 0


def test_events_of_an_erased_visitor_are_purged(store):
    exchange(store, id="tp-erased-0001", conversation="conversation-er", stage="decision")
    with store() as session:
        session.add(Conversation(id="conversation-kept", visitor_id="visitor-kept"))
        kept = Touchpoint(id="tp-kept-00001", conversation_id="conversation-kept", visitor_id="visitor-kept", turn=1)
        session.add(kept)
        session.commit()
        session.execute(delete(Touchpoint).where(Touchpoint.visitor_id == "visitor-0001"))  # as erasure does
        session.commit()
        assert outbox.purge_orphans(session=session) == 2, "one event, two URLs"
        assert {r.visitor_id for r in session.scalars(select(OutboxEvent))} == {"visitor-kept"}


def test_erasure_keeps_curated_answers_and_sends_a_signed_visitor_erased_event(make_data_dir):
    from app.staff.auth import create_token

    port = free_port()
    data_dir = make_data_dir()
    engine = make_engine(Settings(data_dir=data_dir))
    with make_sessionmaker(engine)() as session:
        editor = create_token(session=session, name="ed@lumio.example", role="editor")[1]
        admin = create_token(session=session, name="ad@lumio.example", role="admin")[1]
    engine.dispose()
    server = Server(data_dir, JOURNEY_WEBHOOK_URLS=f"http://127.0.0.1:{port}/hooks/journey", **FAST)
    staff = f"{server.url}/v1/staff"
    try:
        question = "Do you have a discount for teachers? I'm ann.teacher@example.com"
        turn = httpx.post(f"{server.url}/v1/chat", json={"message": question}, timeout=60).json()
        answer = {"question": question, "answer": "Teachers get 40% off Starter.", "touchpoint_id": turn["message_id"]}
        written = httpx.post(f"{staff}/answers", json=answer, headers={"authorization": f"Bearer {editor}"}, timeout=30)
        assert written.status_code == 201, written.text

        with Receiver(port) as receiver:
            erased = httpx.delete(
                f"{staff}/visitors/{turn['visitor_id']}", headers={"authorization": f"Bearer {admin}"}, timeout=30
            )
            assert erased.status_code == 200, erased.text
            assert erased.json()["erased"]["curated_answers_detached"] == 1
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                found = [r for r in receiver.accepted if r["headers"]["x-journey-event-type"] == "visitor.erased"]
                if found:
                    break
                time.sleep(0.2)
        [request] = found
        assert valid(request), "the erasure event is signed like every other"
        body = json.loads(request["body"])
        jsonschema.validate(body, SCHEMA)
        assert body["data"]["visitor_id"] == turn["visitor_id"]
        assert body["data"]["conversation_ids"] == [turn["conversation_id"]]

        kept = httpx.get(f"{staff}/answers", headers={"authorization": f"Bearer {editor}"}, timeout=30).json()
        [row] = [a for a in kept["items"] if a["id"] == written.json()["id"]]
        assert row["answer"] == "Teachers get 40% off Starter." and row["touchpoint_id"] is None
        assert "ann.teacher@example.com" not in row["question"], "the visitor's email in the question goes"
        asked = {"message": "Do you have a discount for teachers?"}
        again = httpx.post(f"{server.url}/v1/chat", json=asked, timeout=60)
        assert again.json()["mode"] == "curated" and again.json()["reply"] == "Teachers get 40% off Starter."
    finally:
        server.stop()
