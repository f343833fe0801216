"""The visitor chat API on embedded defaults, through real HTTP."""

from __future__ import annotations

import json

import httpx
import pytest
from sse import stream_chat

PRICING = "How much does the pro plan cost?"


def chat(server, **body) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/chat", json=body, timeout=30)


def test_pricing_question_gets_grounded_decision_answer(offline_server):
    response = chat(offline_server, message=PRICING)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["stage"]["name"] == "decision"
    assert 0 < body["stage"]["confidence"] <= 1
    assert body["stage"]["evidence"], "the stage must come with evidence"
    assert any(s["id"].startswith("pricing/") for s in body["sources"]), body["sources"]
    assert "$29" in body["reply"], body["reply"]
    assert "[1]" in body["reply"]
    assert 2 <= len(body["suggestions"]) <= 4
    assert PRICING.lower() not in [s.lower() for s in body["suggestions"]]
    assert body["mode"] == "offline" and body["outcome"] == "ok"
    for source in body["sources"]:
        assert set(source) == {"id", "title", "url", "snippet"}
        assert source["url"].startswith("https://")


def test_exchange_is_stored_as_touchpoint(offline_server):
    page = {"url": "https://www.lumio.example/pricing?utm_source=news&utm_campaign=fall", "title": "Pricing"}
    body = chat(offline_server, message="Is there a discount for paying yearly?", page=page).json()
    rows = offline_server.touchpoints(id=body["message_id"])
    assert len(rows) == 1
    row = rows[0]
    assert row["conversation_id"] == body["conversation_id"]
    assert row["visitor_id"] == body["visitor_id"]
    assert row["turn"] == 1 and row["outcome"] == "ok" and row["mode"] == "offline"
    assert row["question"] == "Is there a discount for paying yearly?"
    assert row["reply"] == body["reply"]
    assert row["stage"] == body["stage"]["name"]
    assert json.loads(row["sources"]) == body["sources"]
    assert json.loads(row["page"])["utm"] == {"utm_source": "news", "utm_campaign": "fall"}
    assert row["latency_ms"] >= 0


def test_conversation_continues_for_its_visitor(offline_server):
    first = chat(offline_server, message=PRICING).json()
    second = chat(
        offline_server,
        message="ok thanks",
        conversation_id=first["conversation_id"],
        visitor_id=first["visitor_id"],
    )
    assert second.status_code == 200, second.text
    data = second.json()
    assert data["conversation_id"] == first["conversation_id"]
    assert data["stage"]["name"] == "decision", "a vague message must not move the stage"
    assert data["stage"]["previous"] == "decision"
    turns = [r["turn"] for r in offline_server.touchpoints(conversation_id=first["conversation_id"])]
    assert turns == [1, 2]


def test_stage_says_when_the_detector_is_unsure(offline_server):
    first = chat(offline_server, message=PRICING).json()
    assert first["stage"]["uncertain"] is False
    follow = {"conversation_id": first["conversation_id"], "visitor_id": first["visitor_id"]}
    unsure = chat(offline_server, message="hmm", **follow).json()
    assert unsure["stage"]["name"] == "decision" and unsure["stage"]["uncertain"] is True
    events = dict(stream_chat(offline_server.url, {"message": "hmm", **follow}))
    assert events["stage"]["uncertain"] is True and events["done"]["stage"]["uncertain"] is True


def test_support_question_offers_a_person(offline_server):
    data = chat(offline_server, message="My Google calendar stopped syncing with Lumio, bookings are missing").json()
    assert data["stage"]["name"] == "support"
    assert data["handoff"]["suggested"] is True
    assert any("sync" in s["id"] or "calendar" in s["id"] for s in data["sources"]), data["sources"]


def test_unknown_topic_says_so_instead_of_guessing(offline_server):
    data = chat(offline_server, message="What is the airspeed velocity of an unladen swallow?").json()
    assert data["sources"] == []
    assert "couldn't find" in data["reply"]
    assert data["handoff"] == {"suggested": True, "reason": "no_answer"}


def test_other_visitors_conversation_is_refused(offline_server):
    first = chat(offline_server, message=PRICING).json()
    for visitor in ("someone-else-123", None):
        body = {"message": "what did I ask before?", "conversation_id": first["conversation_id"]}
        if visitor:
            body["visitor_id"] = visitor
        response = httpx.post(f"{offline_server.url}/v1/chat", json=body, timeout=30)
        assert response.status_code == 404
        assert "conversation not found for this visitor" in response.json()["detail"]
        assert PRICING not in response.text
    stream = httpx.post(
        f"{offline_server.url}/v1/chat/stream",
        json={"message": "hi", "conversation_id": first["conversation_id"], "visitor_id": "intruder-42"},
        timeout=30,
    )
    assert stream.status_code == 404
    rows = offline_server.touchpoints(conversation_id=first["conversation_id"])
    assert len(rows) == 1, "refused requests must not add touchpoints"


@pytest.mark.parametrize(
    ("body", "status", "phrase"),
    [
        ({"message": ""}, 422, "message must not be empty"),
        ({"message": "   \n "}, 422, "message must not be empty"),
        ({}, 422, "message: Field required"),
        ({"message": 42}, 422, "message"),
        ({"message": "x" * 5000}, 422, "at most 4000 characters"),
        ({"message": "x" * 100_000}, 413, "request body too large"),
        ({"message": "hi", "conversation_id": "../../etc"}, 422, "conversation_id"),
        ({"message": "hi", "page": {"url": "u" * 3000}}, 422, "page.url"),
    ],
)
def test_bad_input_gets_clear_4xx(offline_server, body, status, phrase):
    for path in ("/v1/chat", "/v1/chat/stream"):
        response = httpx.post(f"{offline_server.url}{path}", json=body, timeout=30)
        assert response.status_code == status, response.text
        assert phrase in response.text


def test_a_chunked_body_over_the_limit_is_413_not_400(offline_server):
    def chunks():
        yield b'{"message": "'
        for _ in range(100):
            yield b"x" * 1000  # no content-length: the limit is counted as the body arrives
        yield b'"}'

    for path in ("/v1/chat", "/v1/chat/stream", "/v1/chat/completions"):
        response = httpx.post(
            f"{offline_server.url}{path}", content=chunks(), headers={"content-type": "application/json"}, timeout=30
        )
        assert response.status_code == 413, (path, response.text)
        assert "request body too large" in response.text


def test_openapi_documents_every_error_answer_and_content_type(offline_server):
    spec = httpx.get(f"{offline_server.url}/openapi.json", timeout=30).json()
    error_bodies = {"#/components/schemas/ErrorBody", "#/components/schemas/OpenAIErrorBody"}
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            where, responses = f"{method.upper()} {path}", operation["responses"]
            for code, response in responses.items():
                if code.startswith(("4", "5")):  # every error answer has its body model
                    assert response["content"]["application/json"]["schema"]["$ref"] in error_bodies, (where, code)
            if "requestBody" in operation:
                assert "413" in responses, where
                if "OpenAIErrorBody" not in json.dumps(responses):  # FastAPI reads the body: bad JSON, type, fields
                    assert {"400", "415", "422"} <= set(responses), where
            if operation.get("parameters"):
                assert "422" in responses or "400" in responses, where
            if path.startswith(("/v1/staff", "/v1/admin")):
                assert {"401", "403", "429", "503"} <= set(responses), where
            elif path.startswith("/v1/conversations") or path in ("/v1/chat", "/v1/chat/stream"):
                assert {"404", "429", "503"} <= set(responses), where
    chat = spec["paths"]["/v1/chat"]["post"]["responses"]
    assert {"401", "409"} <= set(chat)
    streams = ["/v1/chat/stream", "/v1/conversations/{conversation_id}/live", "/v1/staff/live"]
    for path in streams:
        (method,) = spec["paths"][path]
        assert set(spec["paths"][path][method]["responses"]["200"]["content"]) == {"text/event-stream"}, path
    completions = spec["paths"]["/v1/chat/completions"]["post"]["responses"]
    assert set(completions["200"]["content"]) == {"application/json", "text/event-stream"}
    assert {"400", "401", "404", "409", "413", "429", "503"} <= set(completions)
    export = spec["paths"]["/v1/staff/export"]["get"]["responses"]
    assert set(export["200"]["content"]) == {"text/csv", "application/x-ndjson"}


def test_a_body_that_is_not_json_is_415_and_a_missing_body_says_so(offline_server):
    sent = httpx.post(
        f"{offline_server.url}/v1/chat",
        content=b'{"message": "hi"}',
        headers={"content-type": "text/plain"},
        timeout=30,
    )
    assert sent.status_code == 415, sent.text
    assert "must be JSON" in sent.json()["error"] and "text/plain" in sent.json()["error"]
    missing = httpx.post(f"{offline_server.url}/v1/chat", timeout=30)
    assert missing.status_code == 422
    assert missing.json()["error"] == "body: a JSON object is required"


def test_a_405_lists_every_method_of_the_path_in_allow(offline_server):
    # GET and POST /v1/staff/answers are two routes; Starlette's 405 named only the first one's methods
    response = httpx.request("PATCH", f"{offline_server.url}/v1/staff/answers", timeout=30)
    assert response.status_code == 405
    assert set(response.headers["allow"].split(", ")) == {"GET", "POST"}


def test_invalid_json_is_400(offline_server):
    for path in ("/v1/chat", "/v1/chat/stream"):
        response = httpx.post(
            f"{offline_server.url}{path}",
            content=b'{"message": "hi"',
            headers={"content-type": "application/json"},
            timeout=30,
        )
        assert response.status_code == 400
        assert response.json()["error"] == "the request body is not valid JSON"


def test_bad_input_loses_nothing(offline_server):
    before = len(offline_server.touchpoints())
    chat(offline_server, message="")
    httpx.post(f"{offline_server.url}/v1/chat", content=b"{", headers={"content-type": "application/json"})
    assert len(offline_server.touchpoints()) == before
    assert chat(offline_server, message=PRICING).status_code == 200


def test_health_reports_offline_mode(offline_server):
    data = httpx.get(f"{offline_server.url}/health").json()
    assert data["status"] == "ok" and data["mode"] == "offline"
    assert data["knowledge"]["passages"] > 40


def test_stage_transition_is_recorded(offline_server):
    first = chat(offline_server, message=PRICING).json()
    ids = {"conversation_id": first["conversation_id"], "visitor_id": first["visitor_id"]}
    moved = chat(offline_server, message="we bought it last month and now the calendar sync is broken", **ids).json()
    assert moved["stage"]["name"] == "support" and moved["stage"]["previous"] == "decision"
    assert any(e["type"] == "transition" for e in moved["stage"]["evidence"])
    rows = offline_server.touchpoints(conversation_id=first["conversation_id"])
    assert [(r["stage"], r["previous_stage"], r["stage_changed"]) for r in rows] == [
        ("decision", None, 0),
        ("support", "decision", 1),
    ]
    assert json.loads(rows[1]["stage_scores"])["support"] == moved["stage"]["scores"]["support"]
