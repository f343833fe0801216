"""Transcript, feedback and handoff of a visitor's own conversation, through real HTTP."""

from __future__ import annotations

import json

import httpx
import pytest


def chat(server, **body) -> dict:
    response = httpx.post(f"{server.url}/v1/chat", json=body, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def post(server, path: str, body: dict) -> httpx.Response:
    return httpx.post(f"{server.url}{path}", json=body, timeout=30)


@pytest.fixture()
def turn(offline_server) -> dict:
    """A fresh one-exchange conversation."""
    return chat(offline_server, message="How much does the pro plan cost?")


def test_feedback_is_stored_as_next_touchpoint(offline_server, turn):
    cid, vid, mid = turn["conversation_id"], turn["visitor_id"], turn["message_id"]
    response = post(
        offline_server,
        f"/v1/conversations/{cid}/feedback",
        {"visitor_id": vid, "message_id": mid, "rating": "down", "comment": "too long"},
    )
    assert response.status_code == 201, response.text
    assert response.json() == {"conversation_id": cid, "message_id": mid, "rating": "down", "status": "recorded"}
    rows = offline_server.touchpoints(conversation_id=cid, kind="feedback")
    assert len(rows) == 1
    assert rows[0]["turn"] == 2 and rows[0]["visitor_id"] == vid and rows[0]["stage"] == turn["stage"]["name"]
    assert json.loads(rows[0]["data"]) == {"rating": "down", "message_id": mid, "comment": "too long"}
    exchange = offline_server.touchpoints(id=mid)[0]
    assert exchange["kind"] == "exchange" and "rating" not in json.loads(exchange["data"] or "{}")


def test_exchange_after_feedback_takes_the_next_turn(offline_server, turn):
    cid, vid = turn["conversation_id"], turn["visitor_id"]
    body = {"visitor_id": vid, "message_id": turn["message_id"], "rating": "up"}
    assert post(offline_server, f"/v1/conversations/{cid}/feedback", body).status_code == 201
    second = chat(offline_server, message="Is there a yearly discount?", conversation_id=cid, visitor_id=vid)
    assert offline_server.touchpoints(id=second["message_id"])[0]["turn"] == 3


def test_feedback_from_another_visitor_is_404_and_not_recorded(offline_server, turn):
    cid = turn["conversation_id"]
    body = {"visitor_id": "someone-else-123", "message_id": turn["message_id"], "rating": "up"}
    response = post(offline_server, f"/v1/conversations/{cid}/feedback", body)
    assert response.status_code == 404
    assert "conversation not found for this visitor" in response.json()["detail"]
    assert offline_server.touchpoints(conversation_id=cid, kind="feedback") == []


def test_feedback_on_a_message_of_another_conversation_is_404(offline_server, turn):
    other = chat(offline_server, message="Can I cancel anytime?", visitor_id=turn["visitor_id"])
    body = {"visitor_id": turn["visitor_id"], "message_id": other["message_id"], "rating": "up"}
    response = post(offline_server, f"/v1/conversations/{turn['conversation_id']}/feedback", body)
    assert response.status_code == 404
    assert "message not found in this conversation" in response.json()["detail"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"rating": "meh"}, "rating"),
        ({"message_id": "x"}, "message_id"),
        ({"visitor_id": None}, "visitor_id"),
        ({"comment": "x" * 2001}, "comment"),
    ],
)
def test_bad_feedback_is_a_clear_422(offline_server, turn, change, field):
    body = {"visitor_id": turn["visitor_id"], "message_id": turn["message_id"], "rating": "up"} | change
    response = post(offline_server, f"/v1/conversations/{turn['conversation_id']}/feedback", body)
    assert response.status_code == 422, response.text
    assert response.json()["error"].startswith(f"{field}:")


def test_malformed_conversation_id_is_422(offline_server, turn):
    body = {"visitor_id": turn["visitor_id"], "message_id": turn["message_id"], "rating": "up"}
    response = post(offline_server, "/v1/conversations/no/feedback", body)
    assert response.status_code == 422 and "conversation_id" in response.json()["error"]


def test_anonymous_handoff_email_is_optional_but_must_be_valid(offline_server, turn):
    cid, vid = turn["conversation_id"], turn["visitor_id"]
    bad = post(offline_server, f"/v1/conversations/{cid}/handoff", {"visitor_id": vid, "email": "not-an-email"})
    assert bad.status_code == 422 and bad.json()["error"] == "email: not a valid email address"
    assert offline_server.touchpoints(conversation_id=cid, kind="handoff") == []
    missing = post(offline_server, f"/v1/conversations/{cid}/handoff", {"visitor_id": vid, "message": "help"})
    assert missing.status_code == 201, missing.text
    assert missing.json()["email"] is None and missing.json()["status"] == "waiting"
    assert "ask for your email" in missing.json()["next_steps"], "no one free: the visitor is asked for an email later"


def test_handoff_is_recorded_and_tells_the_visitor_what_happens_next(offline_server, turn):
    cid, vid = turn["conversation_id"], turn["visitor_id"]
    body = {
        "visitor_id": vid,
        "email": " ana@salon.example ",
        "message": "I need to move 40 staff",
        "page": {"url": "https://www.lumio.example/pricing", "title": "Pricing"},
    }
    response = post(offline_server, f"/v1/conversations/{cid}/handoff", body)
    assert response.status_code == 201, response.text
    out = response.json()
    assert out["email"] == "ana@salon.example" and out["status"] == "waiting"
    assert "ana@salon.example" in out["next_steps"] and "Lumio support team" in out["next_steps"]
    rows = offline_server.touchpoints(conversation_id=cid, kind="handoff")
    assert len(rows) == 1 and rows[0]["turn"] == 2
    assert json.loads(rows[0]["data"]) == {
        "email": "ana@salon.example",
        "email_from": "visitor",
        "message": "I need to move 40 staff",
        "reason": "visitor",
    }
    assert json.loads(rows[0]["page"])["url"] == "https://www.lumio.example/pricing"


def test_known_visitor_hands_off_with_the_identity_email(offline_server):
    identity = {"known_customer": True, "id": "cus_42", "email": "owner@glow.example", "plan": "pro"}
    first = chat(offline_server, message="My booking page is blank", identity=identity)
    response = post(
        offline_server, f"/v1/conversations/{first['conversation_id']}/handoff", {"visitor_id": first["visitor_id"]}
    )
    assert response.status_code == 201, response.text
    assert response.json()["email"] == "owner@glow.example"
    row = offline_server.touchpoints(conversation_id=first["conversation_id"], kind="handoff")[0]
    assert json.loads(row["data"])["email_from"] == "identity"


def test_handoff_by_another_visitor_is_404(offline_server, turn):
    body = {"visitor_id": "intruder-visitor", "email": "x@y.example"}
    response = post(offline_server, f"/v1/conversations/{turn['conversation_id']}/handoff", body)
    assert response.status_code == 404
    assert offline_server.touchpoints(conversation_id=turn["conversation_id"], kind="handoff") == []


def test_transcript_restores_turns_feedback_and_handoff(offline_server, turn):
    cid, vid = turn["conversation_id"], turn["visitor_id"]
    second = chat(offline_server, message="Is there a yearly discount?", conversation_id=cid, visitor_id=vid)
    for rating in ("up", "down"):  # the latest rating counts
        body = {"visitor_id": vid, "message_id": turn["message_id"], "rating": rating}
        post(offline_server, f"/v1/conversations/{cid}/feedback", body)
    post(offline_server, f"/v1/conversations/{cid}/handoff", {"visitor_id": vid, "email": "ana@salon.example"})
    response = httpx.get(f"{offline_server.url}/v1/conversations/{cid}", params={"visitor_id": vid}, timeout=30)
    assert response.status_code == 200, response.text
    out = response.json()
    assert out["conversation_id"] == cid and out["visitor_id"] == vid
    assert [t["question"] for t in out["turns"]] == ["How much does the pro plan cost?", "Is there a yearly discount?"]
    first, last = out["turns"]
    assert first["message_id"] == turn["message_id"] and first["reply"] == turn["reply"]
    assert first["stage"] == turn["stage"]["name"] and first["sources"] == turn["sources"]
    assert first["feedback"] == "down" and last["feedback"] is None
    assert last["suggestions"] == second["suggestions"] and last["outcome"] == "ok"
    assert out["handoff"]["email"] == "ana@salon.example"


def test_transcript_is_only_the_visitors_own(offline_server, turn):
    url = f"{offline_server.url}/v1/conversations/{turn['conversation_id']}"
    other = httpx.get(url, params={"visitor_id": "another-visitor"}, timeout=30)
    assert other.status_code == 404 and "conversation not found for this visitor" in other.json()["detail"]
    missing = httpx.get(url, timeout=30)
    assert missing.status_code == 422 and missing.json()["error"].startswith("query.visitor_id:")


def test_landing_utm_is_kept_when_the_page_url_has_none(offline_server):
    page = {"url": "https://www.lumio.example/pricing", "utm": {"utm_source": "newsletter", "evil": "x"}}
    body = chat(offline_server, message="Is there a discount for paying yearly?", page=page)
    stored = json.loads(offline_server.touchpoints(id=body["message_id"])[0]["page"])
    assert stored["utm"] == {"utm_source": "newsletter"}
    page = {"url": "https://www.lumio.example/pricing?utm_source=ads", "utm": {"utm_source": "newsletter"}}
    body = chat(offline_server, message="Is there a discount for paying yearly?", page=page)
    assert json.loads(offline_server.touchpoints(id=body["message_id"])[0]["page"])["utm"] == {"utm_source": "ads"}
