"""Abuse protection through real HTTP: limits, verified identity, isolation, injection, output, privacy."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
import uuid
from datetime import timedelta

import httpx
import pytest
from conftest import Server, base_env, run_cli

from app.security.identity import sign

SECRET = "host-server-secret-123"


@pytest.fixture(scope="module")
def hardened(make_data_dir):
    server = Server(
        make_data_dir(),
        JOURNEY_RATE_LIMIT_VISITOR="4/60",
        JOURNEY_RATE_LIMIT_IP="1000/60",
        JOURNEY_IDENTITY_SECRET=SECRET,
        JOURNEY_IDENTITY_ENFORCE="true",
        JOURNEY_REDACT_PII="true",
        JOURNEY_MAX_TURNS="3",
    )
    yield server
    server.stop()


def visitor() -> str:
    return f"v-{uuid.uuid4().hex}"


def post(server, path, body) -> httpx.Response:
    return httpx.post(f"{server.url}{path}", json=body, timeout=30)


def signed(**fields) -> dict:
    identity = {
        "id": "cus_7",
        "email": "ana@example.com",
        "known_customer": True,
        "expires": int(time.time()) + 300,
        **fields,
    }
    identity["signature"] = sign(identity, SECRET)
    return identity


def test_per_visitor_rate_limit_answers_429_with_retry_after(hardened):
    who = visitor()
    codes = [post(hardened, "/v1/chat", {"message": "What is Lumio?", "visitor_id": who}).status_code for _ in range(5)]
    assert codes == [200, 200, 200, 200, 429]
    refused = post(hardened, "/v1/chat/stream", {"message": "What is Lumio?", "visitor_id": who})
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert "too many messages from this visitor: the limit is 4 per 60s" in refused.json()["detail"]
    assert post(hardened, "/v1/chat", {"message": "What is Lumio?", "visitor_id": visitor()}).status_code == 200


def test_per_ip_limit(make_data_dir):
    server = Server(make_data_dir(), JOURNEY_RATE_LIMIT_IP="3/60")
    try:
        codes = [post(server, "/v1/chat", {"message": "hi", "visitor_id": visitor()}).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        assert "this network address" in post(server, "/v1/chat", {"message": "hi"}).json()["detail"]
    finally:
        server.stop()


def test_transcripts_suggestions_and_live_streams_have_a_per_ip_limit(make_data_dir):
    server = Server(make_data_dir(), JOURNEY_RATE_LIMIT_READS="4/60")
    try:
        turn = post(server, "/v1/chat", {"message": "What is Lumio?", "visitor_id": visitor()}).json()
        who = {"visitor_id": turn["visitor_id"]}
        transcript = f"{server.url}/v1/conversations/{turn['conversation_id']}"
        codes = [httpx.get(transcript, params=who, timeout=30).status_code for _ in range(2)]
        codes += [httpx.get(f"{server.url}/v1/suggestions", timeout=30).status_code for _ in range(2)]
        assert codes == [200, 200, 200, 200]
        for url, params in ((transcript, who), (f"{server.url}/v1/suggestions", {}), (f"{transcript}/live", who)):
            refused = httpx.get(url, params=params, timeout=30)
            assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1, (url, refused.text)
        assert post(server, "/v1/chat", {"message": "hi", "visitor_id": visitor()}).status_code == 200, "chat apart"
    finally:
        server.stop()


def redis_available() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            return True
    except OSError:
        return False


def test_rate_limit_is_shared_across_workers_through_redis(make_data_dir):
    if not redis_available():
        if os.environ.get("JOURNEY_REQUIRE_SERVICES") == "1":
            pytest.fail("Redis on 127.0.0.1:6379 is required in CI (JOURNEY_REQUIRE_SERVICES=1)")
        pytest.skip("no Redis on 127.0.0.1:6379")
    env = {
        "JOURNEY_REDIS_URL": "redis://127.0.0.1:6379/10",  # its own database: test files run in parallel
        "JOURNEY_RATE_LIMIT_VISITOR": "3/60",
        "JOURNEY_RATE_LIMIT_IP": "10000/60",
    }
    data_dir = make_data_dir()
    one, two = Server(data_dir, **env), Server(data_dir, **env)
    try:
        who = visitor()
        codes = [post(s, "/v1/chat", {"message": "hi", "visitor_id": who}).status_code for s in (one, two, one, two)]
        assert codes == [200, 200, 200, 429], "the two workers count the same visitor together"
    finally:
        one.stop()
        two.stop()


def test_unsigned_or_forged_identity_is_refused(hardened):
    body = {"message": "How do I add staff?", "visitor_id": visitor()}
    unsigned = post(hardened, "/v1/chat", {**body, "identity": {"id": "cus_7", "known_customer": True}})
    assert unsigned.status_code == 401 and "identity must be signed" in unsigned.json()["detail"]
    forged = signed()
    forged["plan"] = "business"
    assert "does not match" in post(hardened, "/v1/chat", {**body, "identity": forged}).json()["detail"]
    expired = signed(expires=int(time.time()) - 5)
    assert "expired" in post(hardened, "/v1/chat", {**body, "identity": expired}).json()["detail"]
    claimed = post(hardened, "/v1/chat", {**body, "identity": {**signed(), "verified": True, "signature": "00"}})
    assert claimed.status_code == 401
    assert hardened.touchpoints(visitor_id=body["visitor_id"]) == []


def test_anonymous_visitor_who_identifies_keeps_the_conversation(hardened):
    who = visitor()
    first = post(hardened, "/v1/chat", {"message": "How much does the pro plan cost?", "visitor_id": who}).json()
    ids = {"conversation_id": first["conversation_id"], "visitor_id": who}
    second = post(hardened, "/v1/chat", {"message": "and for 12 staff?", **ids, "identity": signed()})
    assert second.status_code == 200, second.text
    data = second.json()
    assert data["conversation_id"] == first["conversation_id"]
    assert data["stage"]["previous"] == "decision"
    rows = hardened.touchpoints(conversation_id=first["conversation_id"])
    assert [r["turn"] for r in rows] == [1, 2]
    con = sqlite3.connect(hardened.data_dir / "journey.db")
    identity = json.loads(
        con.execute("SELECT identity FROM conversations WHERE id = ?", (first["conversation_id"],)).fetchone()[0]
    )
    con.close()
    assert identity["verified"] is True and identity["id"] == "cus_7" and "signature" not in identity


def test_conversations_stop_at_max_turns(hardened):
    who = visitor()
    first = post(hardened, "/v1/chat", {"message": "What is Lumio?", "visitor_id": who}).json()
    ids = {"conversation_id": first["conversation_id"], "visitor_id": who}
    assert post(hardened, "/v1/chat", {"message": "who is it for?", **ids}).status_code == 200
    assert post(hardened, "/v1/chat", {"message": "ok", **ids}).status_code == 200
    full = post(hardened, "/v1/chat", {"message": "more?", **ids})
    assert full.status_code == 409 and "start a new conversation" in full.json()["detail"]


def test_pii_is_redacted_before_storage(hardened):
    who = visitor()
    message = "I'm ana@example.com, call +44 7700 900123, my card 4111 1111 1111 1111 was charged twice"
    reply = post(
        hardened,
        "/v1/chat",
        {
            "message": message,
            "visitor_id": who,
            "page": {"url": "https://www.lumio.example/help?email=ana@example.com"},
        },
    )
    assert reply.status_code == 200
    row = hardened.touchpoints(visitor_id=who)[0]
    assert row["question"] == "I'm [email], call [phone], my card [card] was charged twice"
    assert "ana@example.com" not in row["page"] and "4111" not in row["reply"]


def test_ids_are_unguessable_and_other_ids_get_nothing(offline_server):
    first = post(offline_server, "/v1/chat", {"message": "How much does the pro plan cost?"}).json()
    second = post(offline_server, "/v1/chat", {"message": "How much does the pro plan cost?"}).json()
    for key in ("conversation_id", "visitor_id", "message_id"):
        assert len(first[key]) >= 22 and first[key] != second[key]
    cid, vid = first["conversation_id"], first["visitor_id"]
    guesses = [cid[:-1] + ("A" if cid[-1] != "A" else "B"), "conversation-00000001", "00000000", "1" * 22]
    before = len(offline_server.touchpoints())
    for other_visitor in ("someone-else-1", second["visitor_id"]):
        assert (
            post(
                offline_server, "/v1/chat", {"message": "hi", "conversation_id": cid, "visitor_id": other_visitor}
            ).status_code
            == 404
        )
        assert (
            httpx.get(f"{offline_server.url}/v1/conversations/{cid}", params={"visitor_id": other_visitor}).status_code
            == 404
        )
        assert (
            post(
                offline_server,
                f"/v1/conversations/{cid}/feedback",
                {"visitor_id": other_visitor, "message_id": first["message_id"], "rating": "down"},
            ).status_code
            == 404
        )
        assert (
            post(
                offline_server,
                f"/v1/conversations/{cid}/handoff",
                {"visitor_id": other_visitor, "email": "x@example.com"},
            ).status_code
            == 404
        )
    for guess in guesses:
        assert (
            post(
                offline_server, "/v1/chat/stream", {"message": "hi", "conversation_id": guess, "visitor_id": vid}
            ).status_code
            == 404
        )
        assert httpx.get(f"{offline_server.url}/v1/conversations/{guess}", params={"visitor_id": vid}).status_code in (
            404,
            422,
        )
    assert len(offline_server.touchpoints()) == before, "refused requests leave no trace"


def test_security_headers(offline_server):
    api = post(offline_server, "/v1/chat", {"message": "hi"})
    assert api.headers["x-content-type-options"] == "nosniff"
    assert api.headers["referrer-policy"] == "strict-origin-when-cross-origin"
    for page in ("/", "/staff"):
        response = httpx.get(f"{offline_server.url}{page}")
        assert response.status_code == 200
        csp = response.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "'unsafe-eval'" not in csp and "script-src 'self'" in csp.replace(
            "script-src 'self' 'sha256", "script-src 'self'"
        )


def test_cors_allows_only_configured_origins(make_data_dir):
    server = Server(make_data_dir(), JOURNEY_WIDGET_ORIGINS="https://shop.example")
    try:

        def preflight(origin: str) -> httpx.Response:
            return httpx.options(
                f"{server.url}/v1/chat",
                headers={
                    "origin": origin,
                    "access-control-request-method": "POST",
                    "access-control-request-headers": "content-type",
                },
            )

        assert preflight("https://shop.example").headers.get("access-control-allow-origin") == "https://shop.example"
        assert "access-control-allow-origin" not in preflight("https://evil.example").headers
        simple = httpx.post(f"{server.url}/v1/chat", json={"message": "hi"}, headers={"origin": "https://evil.example"})
        assert "access-control-allow-origin" not in simple.headers
    finally:
        server.stop()


def test_retention_purge(make_data_dir):
    from app.config import Settings
    from app.store.db import make_engine, make_sessionmaker
    from app.store.models import Conversation, Touchpoint, utcnow

    data_dir = make_data_dir()
    engine = make_engine(Settings(data_dir=data_dir))
    old = utcnow() - timedelta(days=40)
    with make_sessionmaker(engine)() as session:
        session.add(Conversation(id="old-conversation", visitor_id="old-visitor", created_at=old, updated_at=old))
        session.add(
            Touchpoint(
                id="old-touchpoint",
                conversation_id="old-conversation",
                visitor_id="old-visitor",
                turn=1,
                created_at=old,
                question="old",
                reply="old",
            )
        )
        session.add(Conversation(id="new-conversation", visitor_id="new-visitor"))
        session.add(
            Touchpoint(
                id="new-touchpoint",
                conversation_id="new-conversation",
                visitor_id="new-visitor",
                turn=1,
                question="new",
                reply="new",
            )
        )
        session.commit()
    engine.dispose()
    env = base_env(data_dir)
    assert run_cli("purge", env=env).returncode == 2
    result = run_cli("purge", env={**env, "JOURNEY_RETENTION_DAYS": "30"})
    assert "deleted 1 touchpoints and 1 conversations older than 30 days" in result.stdout, result.stderr
    con = sqlite3.connect(data_dir / "journey.db")
    assert [r[0] for r in con.execute("SELECT id FROM touchpoints")] == ["new-touchpoint"]
    con.close()


def test_handoff_and_feedback_text_is_redacted_and_limited(hardened):
    who = visitor()
    turn = post(hardened, "/v1/chat", {"message": "my sync is broken", "visitor_id": who}).json()
    cid = turn["conversation_id"]
    handoff = post(
        hardened,
        f"/v1/conversations/{cid}/handoff",
        {"visitor_id": who, "email": "ana@example.com", "message": "call me on +44 7700 900123"},
    )
    assert handoff.status_code == 201, handoff.text
    feedback = post(
        hardened,
        f"/v1/conversations/{cid}/feedback",
        {"visitor_id": who, "message_id": turn["message_id"], "rating": "down", "comment": "mail bob@example.org"},
    )
    assert feedback.status_code == 201, feedback.text
    rows = {r["kind"]: json.loads(r["data"]) for r in hardened.touchpoints(conversation_id=cid) if r["data"]}
    assert rows["handoff"]["message"] == "call me on [phone]" and rows["handoff"]["email"] == "ana@example.com"
    assert rows["feedback"]["comment"] == "mail [email]"
    again = [
        post(
            hardened,
            f"/v1/conversations/{cid}/feedback",
            {"visitor_id": who, "message_id": turn["message_id"], "rating": "up"},
        )
        for _ in range(2)
    ]
    assert [r.status_code for r in again] == [201, 429], "the fifth request of this visitor in a minute is refused"
    assert again[1].headers["retry-after"]
