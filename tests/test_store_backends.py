"""The store on both backends: every case runs on SQLite and on PostgreSQL (127.0.0.1:5432, a fresh database).

PostgreSQL cases skip when it is unreachable, unless JOURNEY_REQUIRE_SERVICES=1 (then they fail).
"""

from __future__ import annotations

import csv
import io
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from conftest import Server, base_env, create_pg_database, run_cli
from sqlalchemy import Engine, select
from sse import stream_chat

from app.config import Settings
from app.security.retention import purge
from app.staff import analytics
from app.staff.auth import _lookup, create_token, revoke_token
from app.staff.export import touchpoint_rows
from app.staff.inbox import set_assignee, set_status
from app.staff.service import (
    ConversationFilter,
    correct_stage,
    erase_visitor,
    learned_examples,
    list_answers,
    list_conversations,
    save_answer,
    thumbs_down_condition,
)
from app.store import schema
from app.store.db import make_engine, make_sessionmaker
from app.store.models import Base, Conversation, Touchpoint
from app.store.service import (
    ConversationNotFound,
    ExchangeRecord,
    conversation_touchpoints,
    find_exchange,
    get_conversation,
    recent_turns,
    record_event,
    record_exchange,
)
from app.webhooks.models import OutboxEvent
from app.webhooks.outbox import claim, install_outbox, settle

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(params=BACKENDS)
def settings(request, tmp_path: Path) -> Iterator[Settings]:
    if request.param == "sqlite":
        yield Settings(data_dir=tmp_path)
        return
    url, drop = create_pg_database()
    yield Settings(data_dir=tmp_path, database_url=url)
    drop()


@pytest.fixture()
def engine(settings: Settings) -> Iterator[Engine]:
    engine = make_engine(settings)
    yield engine
    engine.dispose()


@pytest.fixture()
def sessions(engine: Engine):
    return make_sessionmaker(engine)


def exchange(n: int, *, conversation: str = "conv-a", visitor: str = "visitor-a", **extra) -> ExchangeRecord:
    fields = {
        "id": f"tp-{conversation}-{n:04d}",
        "conversation_id": conversation,
        "visitor_id": visitor,
        "question": f"How much does plan {n} cost? — «ça coûte»",
        "reply": f"Plan {n} is $29 [1].",
        "stage": {"name": "decision", "confidence": 0.81, "evidence": [{"signal": "keyword", "text": "cost"}]},
        "sources": [{"id": "pricing/plans", "title": "Plans", "url": "https://x.example/p", "snippet": "✓ 29 €"}],
        "suggestions": ["Is there a trial?"],
        "page": {"url": "https://x.example/pricing", "title": "Pricing", "utm": {"utm_source": "news"}},
        "identity": {"known_customer": True, "email": "a@x.example"},
        "retrieval_score": 0.73,
        "mode": "offline",
        "model": "offline-composer",
        "latency_ms": 42,
    }
    fields.update(extra)
    return ExchangeRecord(**fields)


def test_migrations_cover_every_model(engine: Engine):
    """Upgraded to head, the database matches the models exactly: a model without a migration fails here."""
    schema.load_models()
    assert schema.current(engine) == schema.head()
    with engine.connect() as connection:
        differences = compare_metadata(
            MigrationContext.configure(connection, opts={"compare_type": True}), Base.metadata
        )
    assert differences == [], (
        f"models differ from the migrations; add a revision (journey db revision -m): {differences}"
    )


def test_exchange_and_event_round_trip(sessions):
    with sessions() as session:
        first = record_exchange(session=session, record=exchange(1))
        second = record_exchange(session=session, record=exchange(2, identity=None))
        conversation = get_conversation(session=session, conversation_id="conv-a", visitor_id="visitor-a")
        feedback = record_event(
            session=session,
            conversation=conversation,
            id="fb-1",
            kind="feedback",
            data={"rating": "down", "message_id": second.id, "nested": {"list": [1, 2.5, None, "é"]}},
        )
        assert (first.turn, second.turn, feedback.turn) == (1, 2, 3)
    with sessions() as session:
        conversation = session.get(Conversation, "conv-a")
        assert conversation.turns == 3 and conversation.stage == "decision"
        assert conversation.identity == {"known_customer": True, "email": "a@x.example"}
        assert conversation.first_page["utm"] == {"utm_source": "news"}
        rows = conversation_touchpoints(session=session, conversation_id="conv-a")
        assert [(r.id, r.kind, r.turn) for r in rows] == [
            ("tp-conv-a-0001", "exchange", 1),
            ("tp-conv-a-0002", "exchange", 2),
            ("fb-1", "feedback", 3),
        ]
        stored = rows[0]
        assert stored.question.endswith("«ça coûte»") and stored.sources[0]["snippet"] == "✓ 29 €"
        assert stored.stage_evidence == [{"signal": "keyword", "text": "cost"}] and stored.data is None
        assert rows[2].data["nested"] == {"list": [1, 2.5, None, "é"]}
        assert [t.id for t in recent_turns(session=session, conversation_id="conv-a")] == [rows[0].id, rows[1].id]
        assert find_exchange(session=session, conversation_id="conv-a", message_id="fb-1") is None
        assert find_exchange(session=session, conversation_id="conv-a", message_id=rows[1].id).reply.startswith(
            "Plan 2"
        )
        downs = session.scalars(select(Touchpoint.id).where(thumbs_down_condition())).all()
        assert downs == ["fb-1"], "JSON field queries work on this backend"


def test_datetimes_come_back_aware_and_exact(sessions):
    moment = datetime(2026, 3, 29, 1, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2)))
    naive = datetime(2026, 3, 29, 4, 0, 0, 654321)
    with sessions() as session:
        record_exchange(session=session, record=exchange(1, created_at=moment))
        record_exchange(session=session, record=exchange(2, created_at=naive))
    with sessions() as session:
        first, second = conversation_touchpoints(session=session, conversation_id="conv-a")
        assert first.created_at.tzinfo is not None and first.created_at == moment
        assert first.created_at.utcoffset() == timedelta(0)
        assert second.created_at == naive.replace(tzinfo=UTC), "naive times are taken as UTC"
        conversation = session.get(Conversation, "conv-a")
        assert conversation.updated_at == naive.replace(tzinfo=UTC)
        since = datetime(2026, 3, 28, 23, 15, tzinfo=UTC)  # `moment` is 23:30 UTC
        period = analytics.Period(since=since, until=since + timedelta(minutes=30))
        assert [d["count"] for d in analytics.daily(session=session, period=period)] == [1]


def test_conversation_belongs_to_its_visitor(sessions):
    with sessions() as session:
        record_exchange(session=session, record=exchange(1))
        with pytest.raises(ConversationNotFound):
            get_conversation(session=session, conversation_id="conv-a", visitor_id="visitor-b")
        with pytest.raises(ConversationNotFound):
            get_conversation(session=session, conversation_id="conv-a", visitor_id=None)
        with pytest.raises(ConversationNotFound):
            record_exchange(session=session, record=exchange(2, visitor="visitor-b"))
    with sessions() as session:
        assert [t.visitor_id for t in conversation_touchpoints(session=session, conversation_id="conv-a")] == [
            "visitor-a"
        ]


def test_turn_numbers_stay_unique_under_concurrent_writers(sessions):
    """Four threads (own sessions and connections) write exchanges and events into one conversation at once."""
    with sessions() as session:
        record_exchange(session=session, record=exchange(0))
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def writer(worker: int) -> None:
        try:
            start.wait()
            for n in range(6):
                with sessions() as session:
                    if n % 3 == 2:
                        conversation = session.get(Conversation, "conv-a")
                        record_event(
                            session=session,
                            conversation=conversation,
                            id=f"ev-{worker}-{n}",
                            kind="feedback",
                            data={"rating": "up"},
                            attempts=10,
                        )
                    else:
                        record_exchange(session=session, record=exchange(worker * 100 + n + 1), attempts=10)
        except BaseException as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    with sessions() as session:
        turns = [t.turn for t in conversation_touchpoints(session=session, conversation_id="conv-a")]
        assert turns == list(range(1, 26)), turns
        assert session.get(Conversation, "conv-a").turns == 25


def test_staff_tokens(sessions):
    with sessions() as session:
        row, token = create_token(session=session, name="ana@x.example", role="editor")
        other, other_token = create_token(session=session, name="bo@x.example", role="viewer")
        assert revoke_token(session=session, token_id=other.id)
    user = _lookup(sessions, token)
    assert user is not None and (user.name, user.role) == ("ana@x.example", "editor")
    assert _lookup(sessions, other_token) is None and _lookup(sessions, token + "x") is None
    with sessions() as session:
        used = session.get(type(row), row.id).last_used_at
        assert used is not None and used.tzinfo is not None


def test_outbox_rows_are_written_with_touchpoints_and_claimed_once(settings: Settings, sessions):
    settings = settings.model_copy(
        update={"webhook_urls": "http://127.0.0.1:9/a,http://127.0.0.1:9/b", "webhook_secret": "s" * 20}
    )
    install_outbox(sessions, settings)
    for n in range(1, 6):
        with sessions() as session:
            record_exchange(session=session, record=exchange(n))
    with sessions() as session:
        rows = session.scalars(select(OutboxEvent).where(OutboxEvent.url == "http://127.0.0.1:9/a")).all()
        assert len(rows) >= 5 and all(r.visitor_id == "visitor-a" for r in rows)
        total = len(rows)
    claimed: list[list[int]] = []
    start = threading.Barrier(3)

    def claimer(worker: int) -> None:
        start.wait()
        with sessions() as session:
            lease = claim(session=session, url="http://127.0.0.1:9/a", limit=total, worker=f"w{worker}", lease=60)
            claimed.append([r.id for r in lease.rows])
            settle(session=session, token=lease.token, delivered=[(r.id, 200) for r in lease.rows])

    threads = [threading.Thread(target=claimer, args=(w,)) for w in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    ids = [i for batch in claimed for i in batch]
    assert len(ids) == len(set(ids)), f"a row was claimed twice: {claimed}"
    with sessions() as session:
        delivered = session.scalars(select(OutboxEvent.id).where(OutboxEvent.status == "delivered")).all()
        assert sorted(delivered) == sorted(ids)


def test_erase_a_visitor_and_retention(sessions):
    with sessions() as session:
        record_exchange(session=session, record=exchange(1))
        record_exchange(session=session, record=exchange(2))
        record_exchange(session=session, record=exchange(1, conversation="conv-b", visitor="visitor-b"))
        old = datetime.now(UTC) - timedelta(days=40)
        record_exchange(session=session, record=exchange(1, conversation="conv-c", visitor="visitor-c", created_at=old))
        counts = erase_visitor(session=session, visitor_id="visitor-a")
        assert counts["touchpoints"] == 2 and counts["conversations"] == 1
        assert purge(session=session, days=30) == {"touchpoints": 1, "conversations": 1}
    with sessions() as session:
        assert session.scalars(select(Conversation.id)).all() == ["conv-b"]


def test_erasure_removes_the_visitors_words_quoted_on_other_turns(sessions):
    """Issue 17: A's corrected message and curated question, quoted on B's touchpoints, go when A is erased."""
    quoted = "I'm ana.lopez@example.com and my invoice is wrong"
    configured = {"type": "example", "stage": "support", "text": "my invoice is wrong", "similarity": 0.7}
    evidence = [
        {"type": "example", "stage": "support", "text": quoted, "similarity": 0.9, "learned": True},
        configured,
        {"type": "example", "stage": "support", "text": quoted, "similarity": 0.9},  # stored before items were marked
        {"type": "correction", "stage": "support", "text": quoted, "similarity": 0.95, "learned": True},
    ]
    with sessions() as session:
        record_exchange(session=session, record=exchange(1, question=quoted))
        correct_stage(session=session, touchpoint_id="tp-conv-a-0001", stage="support", by="staff")
        answer_id = save_answer(
            session=session, question=quoted, answer="We will fix it.", by="staff", touchpoint_id="tp-conv-a-0001"
        ).id
        stage = {"name": "support", "confidence": 0.9, "evidence": evidence}
        data = {"curated_answer_id": answer_id, "curated_question": quoted}
        b = {"conversation": "conv-b", "visitor": "visitor-b"}
        record_exchange(session=session, record=exchange(1, **b, stage=stage, data=data))
        record_exchange(session=session, record=exchange(2, **b))
        counts = erase_visitor(session=session, visitor_id="visitor-a")
    with sessions() as session:
        quoting, other = conversation_touchpoints(session=session, conversation_id="conv-b")
        assert "ana.lopez" not in json.dumps([quoting.stage_evidence, quoting.data])
        assert [e.get("erased") for e in quoting.stage_evidence] == [True, None, True, True]
        assert quoting.stage_evidence[1] == configured and quoting.data == {"curated_answer_id": answer_id}
        assert other.stage_evidence == [{"signal": "keyword", "text": "cost"}]
        assert learned_examples(session=session) == []
    assert counts["quoted_elsewhere"] == 1 and counts["stage_examples"] == 1 and counts["curated_answers_detached"] == 1
    with sessions() as session:
        [kept] = list_answers(session=session)
        assert kept.answer == "We will fix it." and kept.visitor_id is None and kept.source_touchpoint_id is None
        assert kept.question == "I'm [email] and my invoice is wrong"


def test_staff_queries(sessions):
    base = datetime(2026, 5, 4, 23, 30, tzinfo=UTC)
    with sessions() as session:
        for n, stage in enumerate(["awareness", "consideration", "decision"], start=1):
            record = exchange(n, stage={"name": stage, "confidence": 0.5, "previous": "awareness"})
            record.created_at = base + timedelta(hours=n - 1)
            record_exchange(session=session, record=record)
        record_exchange(session=session, record=exchange(1, conversation="conv-b", visitor="visitor-b"))
        conversation = session.get(Conversation, "conv-b")
        record_event(session=session, conversation=conversation, id="ho-1", kind="handoff", data={"email": "b@x"})
        record_event(session=session, conversation=conversation, id="fb-1", kind="feedback", data={"rating": "down"})
    period = analytics.Period(since=base - timedelta(days=1), until=base + timedelta(days=1))
    stages = ["awareness", "consideration", "decision", "support"]
    with sessions() as session:
        days = analytics.daily(session=session, period=period)
        assert [(d["day"], d["stage"], d["count"]) for d in days] == [
            ("2026-05-04", "awareness", 1),
            ("2026-05-05", "consideration", 1),
            ("2026-05-05", "decision", 1),
        ], "days are UTC days"
        moves = {(t["from"], t["to"]): t["count"] for t in analytics.transitions(session=session, period=period)}
        assert moves == {("awareness", "consideration"): 1, ("awareness", "decision"): 1}
        assert analytics.funnel(session=session, period=period, stages=stages)
        assert analytics.rates(session=session, period=period, stages=stages)
        assert analytics.time_in_stage(session=session, period=period)
        rated = analytics.csat(session=session, period=analytics.Period(), stages=stages)
        assert rated["by_stage"] == [{"stage": "decision", "up": 0, "down": 1, "csat": 0.0}]
        assert analytics.resolution(session=session, period=analytics.Period())["unresolved_handoffs"] == 1
        items, total = list_conversations(session=session, f=ConversationFilter(thumbs_down=True), limit=10, offset=0)
        assert total == 1 and items[0]["id"] == "conv-b" and items[0]["handoff"]
        items, total = list_conversations(session=session, f=ConversationFilter(q="MUCH DOES PLAN"), limit=10, offset=0)
        assert total == 2, "case-insensitive search"
    rows = list(touchpoint_rows(sessions, ConversationFilter(visitor_id="visitor-a")))
    assert [r["turn"] for r in rows] == [1, 2, 3] and rows[0]["created_at"] == base


def test_status_snooze_and_reopen_on_both_backends(sessions):
    """Status filters compare times in the database (a snooze that has passed lists as open) and a visitor reopens."""
    with sessions() as session:
        create_token(session=session, name="ann@lumio.example", role="editor")
        for conversation in ("conv-a", "conv-b", "conv-c"):
            record_exchange(session=session, record=exchange(1, conversation=conversation))
        soon = datetime.now(UTC) + timedelta(hours=1)
        set_status(session=session, conversation_id="conv-a", status="snoozed", until=soon, by="ann@lumio.example")
        set_status(session=session, conversation_id="conv-b", status="resolved", until=None, by="ann@lumio.example")
        set_assignee(session=session, conversation_id="conv-b", assignee="ann@lumio.example", by="ann@lumio.example")

    def listed(**f) -> set[str]:
        with sessions() as session:
            items, _ = list_conversations(session=session, f=ConversationFilter(**f), limit=9, offset=0)
            return {c["id"] for c in items}

    assert listed(status="snoozed") == {"conv-a"}
    assert listed(status="open") == {"conv-c"}
    assert listed(status="resolved", assignee="ann@lumio.example") == {"conv-b"}
    assert listed(assignee="none") == {"conv-a", "conv-c"}
    with sessions() as session:  # the snooze time passes
        session.get(Conversation, "conv-a").status_until = datetime.now(UTC) - timedelta(seconds=1)
        session.commit()
        record_exchange(session=session, record=exchange(2, conversation="conv-b"))  # the visitor writes again
    assert listed(status="open") == {"conv-a", "conv-b", "conv-c"}
    assert listed(status="snoozed") == listed(status="resolved") == set()
    with sessions() as session:
        kinds = [(t.turn, t.kind) for t in conversation_touchpoints(session=session, conversation_id="conv-b")]
        assert kinds == [(1, "exchange"), (2, "status"), (3, "assignee"), (4, "exchange"), (5, "status")]
        reopened = conversation_touchpoints(session=session, conversation_id="conv-b")[-1].data
        assert reopened == {"status": "open", "previous": "resolved", "until": None, "by": "visitor"}


def test_customer_filter_reads_signed_identities_on_both_backends(sessions):
    """?customer= matches the id of a verified identity only (JSON fields compared in SQL)."""
    with sessions() as session:
        signed = {"id": "cus_1", "email": "a@x.example", "verified": True}
        forged = {"id": "cus_1", "verified": False}
        for conversation, identity in [("conv-a", signed), ("conv-b", signed), ("conv-c", forged)]:
            record = exchange(1, conversation=conversation, visitor=f"visitor-{conversation}", identity=identity)
            record_exchange(session=session, record=record)
        items, total = list_conversations(session=session, f=ConversationFilter(customer="cus_1"), limit=9, offset=0)
        assert total == 2 and {c["id"] for c in items} == {"conv-a", "conv-b"}


def test_whole_app_on_postgresql(make_data_dir, tmp_path: Path):
    """A server on PostgreSQL: chat (plain and streamed), transcript, feedback, handoff, staff list and export."""
    url, drop = create_pg_database()
    data_dir = make_data_dir()
    env = {"JOURNEY_DATABASE_URL": url}
    server = Server(data_dir, **env)
    try:
        first = httpx.post(f"{server.url}/v1/chat", json={"message": "How much does the pro plan cost?"}, timeout=30)
        assert first.status_code == 200, first.text
        body = first.json()
        ids = {"conversation_id": body["conversation_id"], "visitor_id": body["visitor_id"]}
        events = stream_chat(server.url, {"message": "Is there a free trial?", **ids})
        done = [data for name, data in events if name == "done"]
        assert done and done[0]["conversation_id"] == body["conversation_id"]
        transcript = httpx.get(
            f"{server.url}/v1/conversations/{body['conversation_id']}",
            params={"visitor_id": body["visitor_id"]},
            timeout=30,
        )
        assert transcript.status_code == 200, transcript.text
        assert [t["message_id"] for t in transcript.json()["turns"]] == [body["message_id"], done[0]["message_id"]]
        feedback = httpx.post(
            f"{server.url}/v1/conversations/{body['conversation_id']}/feedback",
            json={"visitor_id": body["visitor_id"], "message_id": body["message_id"], "rating": "down"},
            timeout=30,
        )
        assert feedback.status_code == 201, feedback.text
        handoff = httpx.post(
            f"{server.url}/v1/conversations/{body['conversation_id']}/handoff",
            json={"visitor_id": body["visitor_id"], "email": "visitor@x.example"},
            timeout=30,
        )
        assert handoff.status_code == 201, handoff.text
        created = run_cli("staff", "create-token", "ana@x.example", "--role", "admin", env=base_env(data_dir, **env))
        assert created.returncode == 0, created.stderr
        headers = {"authorization": f"Bearer {created.stdout.strip().splitlines()[-1]}"}
        listed = httpx.get(f"{server.url}/v1/staff/conversations?thumbs_down=true", headers=headers, timeout=30)
        assert listed.status_code == 200, listed.text
        assert [c["id"] for c in listed.json()["items"]] == [body["conversation_id"]]
        for path in ("/analytics", "/analytics/gaps", f"/conversations/{body['conversation_id']}"):
            answer = httpx.get(f"{server.url}/v1/staff{path}", headers=headers, timeout=30)
            assert answer.status_code == 200, (path, answer.text)
        export = httpx.get(f"{server.url}/v1/staff/export?format=csv", headers=headers, timeout=30)
        assert export.status_code == 200, export.text
        kinds = [row["kind"] for row in csv.DictReader(io.StringIO(export.text))]
        assert kinds == ["exchange", "exchange", "feedback", "handoff"]
        erased = httpx.delete(f"{server.url}/v1/staff/visitors/{body['visitor_id']}", headers=headers, timeout=30)
        assert erased.status_code == 200 and erased.json()["erased"]["touchpoints"] == 4
        assert not (data_dir / "journey.db").exists(), "nothing went to SQLite"
    finally:
        server.stop()
        drop()


def test_nul_characters_are_stored(sessions):
    """PostgreSQL text cannot hold NUL; a visitor's NUL must not fail the insert (it becomes U+FFFD there)."""
    with sessions() as session:
        record_exchange(session=session, record=exchange(1, question="a\x00b", page={"title": "x\x00y"}))
    with sessions() as session:
        (row,) = conversation_touchpoints(session=session, conversation_id="conv-a")
        assert row.question in ("a\x00b", "a\ufffdb") and row.page["title"] == "x\x00y"
