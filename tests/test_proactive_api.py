"""Journey-aware proactive messages (issue 19): the rules file, matching a visitor's journey, the endpoints through
real HTTP against a real database, and the per-rule counts of the staff analytics."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from conftest import REPO, Server
from test_staff_api import make_tokens

from app.proactive.rules import Journey, ProactiveConfigError, load_rules, pick
from app.stages.config import load_journey

STAGES = load_journey(REPO / "knowledge" / "stages.yaml").names
RULES = load_rules(REPO / "knowledge" / "proactive.yaml", STAGES)
DECISION = "How much does the pro plan cost for 3 people?"
SUPPORT = "I can't log in, the password reset email never arrives"
ONBOARDING = "How do I import my existing client list into Lumio?"


def journey(latest=None, reached=(), path="/pricing", seconds=30.0, visits=1) -> Journey:
    return Journey(latest, frozenset(reached or ([latest] if latest else [])), path, seconds, visits)


def test_the_shipped_rules_pick_by_stage_journey_page_time_and_visit():
    by_id = lambda j, shown=(): (lambda r: (r[0].id if r[0] else None, r[1]))(pick(RULES, j, set(shown)))  # noqa: E731
    assert by_id(journey("decision")) == ("pricing-decision", None)
    assert by_id(journey("consideration", ["decision", "consideration"], "/plans/team")) == ("pricing-decision", None)
    assert by_id(journey("support", ["decision", "support"])) == (None, None), "nothing for someone mid-support"
    assert by_id(journey("decision", path="/features")) == (None, None), "not this page"
    assert by_id(journey("decision", seconds=2)) == (None, 3.0), "after 5 s on the page: ask again in 3 s"
    assert by_id(journey(None, seconds=12)) == (None, 8.0), "a first look at prices waits 20 s"
    assert by_id(journey(None)) == ("pricing-first-look", None)
    assert by_id(journey("decision"), ["pricing-decision"]) == (None, None), "once per rule per visitor"
    assert by_id(journey("consideration"), ["pricing-first-look"]) == (None, None)
    assert by_id(journey("onboarding", path="/docs", visits=1)) == (None, None), "returning visits only"
    assert by_id(journey("onboarding", path="/docs", visits=2)) == ("welcome-back-onboarding", None)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("rules: [{id: a, message: hi, pages: /x}]", "unknown keys ['pages']"),
        ("rules: [{id: a, message: hi, stage: [buying]}]", "unknown stages ['buying']"),
        ("rules: [{id: a, message: hi, reached: [none]}]", "unknown stages ['none']"),
        ("rules: [{id: A b, message: hi}]", "id must be"),
        ("rules: [{id: a}]", "message"),
        ("rules: [{id: a, message: hi}, {id: a, message: ho}]", "unique"),
        ("rules: [{id: a, message: hi, after_seconds: -1}]", "after_seconds"),
        ("rules: [{id: a, message: hi, returning: maybe}]", "returning"),
        ("rules: [{id: a, message: hi, chips: [a, b, c, d, e]}]", "chips"),
        ("rules: {id: a}", "must be a list"),
    ],
)
def test_a_malformed_rules_file_is_refused_with_what_is_wrong(tmp_path: Path, text: str, error: str):
    path = tmp_path / "proactive.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ProactiveConfigError, match=error.replace("[", r"\[").replace("]", r"\]")):
        load_rules(path, STAGES)


def test_no_rules_file_means_no_rules(tmp_path: Path):
    assert load_rules(tmp_path / "proactive.yaml", STAGES) == ()


@pytest.fixture(scope="module")
def served(make_data_dir):
    data_dir = make_data_dir()
    tokens = make_tokens(data_dir)
    server = Server(data_dir)
    yield server, tokens
    server.stop()


def post(server: Server, path: str, body: dict) -> httpx.Response:
    return httpx.post(f"{server.url}{path}", json=body, timeout=30)


def chat(server: Server, message: str, visitor: str, url: str, conversation: str | None = None) -> dict:
    body = {"message": message, "visitor_id": visitor, "page": {"url": url}, "conversation_id": conversation}
    response = post(server, "/v1/chat", body)
    assert response.status_code == 200, response.text
    return response.json()


def ask(server: Server, visitor: str, path: str = "/pricing", seconds: float = 30, **extra) -> httpx.Response:
    body = {"visitor_id": visitor, "page": {"url": f"https://www.lumio.example{path}"}, "seconds_on_page": seconds}
    return post(server, "/v1/proactive", {**body, **extra})


def test_messages_follow_the_visitors_own_journey_and_are_counted_per_rule(served):
    server, tokens = served
    site = "https://www.lumio.example"
    # a visitor whose conversation reached decision, then a page where nothing applies
    first = chat(server, DECISION, "visitor-decided-1", f"{site}/pricing")
    assert first["stage"]["name"] == "decision", first["stage"]
    out = ask(server, "visitor-decided-1", seconds=2).json()
    assert out == {"message": None, "retry_after": 3.0}
    out = ask(server, "visitor-decided-1", conversation_id=first["conversation_id"], seconds=6).json()
    message = out["message"]
    assert message["rule"] == "pricing-decision" and message["text"].startswith("Comparing plans?")
    assert message["chips"] and message["conversation_id"] == first["conversation_id"], "in the current conversation"
    assert ask(server, "visitor-decided-1", seconds=60).json()["message"] is None, "once per rule per visitor"
    opened = post(server, f"/v1/proactive/{message['id']}/open", {"visitor_id": "visitor-decided-1"})
    assert opened.status_code == 201 and opened.json()["action"] == "open"
    again = post(server, f"/v1/proactive/{message['id']}/open", {"visitor_id": "visitor-decided-1"})
    assert again.status_code == 201, "idempotent"
    chat(server, ONBOARDING, "visitor-decided-1", f"{site}/pricing", first["conversation_id"])

    # someone mid-support: nothing on the pricing page, however long they stay
    support = chat(server, SUPPORT, "visitor-support-1", f"{site}/help")
    assert support["stage"]["name"] == "support", support["stage"]
    assert ask(server, "visitor-support-1", seconds=600).json() == {"message": None, "retry_after": None}

    # a first-time visitor: a new conversation, kept out of the staff inbox until they write
    out = ask(server, "visitor-new-0001", seconds=25).json()["message"]
    assert out["rule"] == "pricing-first-look" and out["conversation_id"] != first["conversation_id"]
    listed = httpx.get(
        f"{server.url}/v1/staff/conversations",
        params={"visitor_id": "visitor-new-0001"},
        headers={"authorization": f"Bearer {tokens['viewer']}"},
        timeout=30,
    ).json()
    assert listed["total"] == 0, listed
    dismissed = post(server, f"/v1/proactive/{out['id']}/dismiss", {"visitor_id": "visitor-new-0001"})
    assert dismissed.status_code == 201
    rows = server.touchpoints(visitor_id="visitor-new-0001")
    assert [r["kind"] for r in rows] == ["proactive_shown", "proactive_dismissed"]

    # a visitor who opens the first-look message and writes, but stays at the page's stage (decision)
    out = ask(server, "visitor-new-0002", seconds=25).json()["message"]
    post(server, f"/v1/proactive/{out['id']}/open", {"visitor_id": "visitor-new-0002"})
    reply = chat(server, DECISION, "visitor-new-0002", f"{site}/pricing", out["conversation_id"])
    assert reply["conversation_id"] == out["conversation_id"], "the resulting conversation is the one shown in"

    analytics = httpx.get(
        f"{server.url}/v1/staff/analytics", headers={"authorization": f"Bearer {tokens['viewer']}"}, timeout=60
    ).json()
    rows = {r["rule"]: r for r in analytics["proactive"]}
    assert list(rows) == ["pricing-decision", "pricing-first-look", "welcome-back-onboarding"]
    assert rows["pricing-decision"] == {
        "rule": "pricing-decision",
        **{"shown": 1, "opened": 1, "dismissed": 0, "conversations": 1, "moved": 1},
    }
    assert rows["pricing-first-look"] == {
        "rule": "pricing-first-look",
        **{"shown": 2, "opened": 1, "dismissed": 1, "conversations": 1, "moved": 0},
    }
    assert rows["welcome-back-onboarding"]["shown"] == 0


def test_visitors_cannot_reach_other_visitors_messages_or_conversations(served):
    server, _ = served
    mine = chat(server, DECISION, "visitor-owner-01", "https://www.lumio.example/pricing")
    response = ask(server, "visitor-intruder", conversation_id=mine["conversation_id"])
    assert response.status_code == 404 and "not found for this visitor" in response.json()["detail"]
    shown = ask(server, "visitor-owner-01").json()["message"]
    for action in ("open", "dismiss"):
        response = post(server, f"/v1/proactive/{shown['id']}/{action}", {"visitor_id": "visitor-intruder"})
        assert response.status_code == 404 and "was shown to this visitor" in response.json()["detail"]
    assert [r["kind"] for r in server.touchpoints(visitor_id="visitor-intruder")] == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"page": {"url": "/pricing"}, "seconds_on_page": 3}, "visitor_id"),
        ({"visitor_id": "short", "page": {"url": "/pricing"}, "seconds_on_page": 3}, "visitor_id"),
        ({"visitor_id": "visitor-bad-input", "page": {"url": "/pricing"}, "seconds_on_page": -1}, "seconds_on_page"),
        ({"visitor_id": "visitor-bad-input", "page": {"url": "/p"}, "seconds_on_page": "soon"}, "seconds_on_page"),
        ({"visitor_id": "visitor-bad-input", "page": {"url": "/p"}, "seconds_on_page": 3, "visits": 0}, "visits"),
        ({"visitor_id": "visitor-bad-input", "seconds_on_page": 3}, "page"),
        ({"visitor_id": "visitor-bad-input", "page": {"url": "x" * 3000}, "seconds_on_page": 3}, "url"),
        (
            {"visitor_id": "visitor-bad-input", "page": {}, "seconds_on_page": 3, "conversation_id": "../x"},
            "conversation_id",
        ),
    ],
)
def test_bad_input_is_a_422_naming_the_field(served, body, field):
    server, _ = served
    response = post(server, "/v1/proactive", body)
    assert response.status_code == 422, response.text
    assert field in response.text


def test_bad_actions_and_ids_are_4xx(served):
    server, _ = served
    assert (
        post(server, "/v1/proactive/pro-abcdefgh1234/explode", {"visitor_id": "visitor-bad-input"}).status_code == 422
    )
    assert post(server, "/v1/proactive/bad!id/open", {"visitor_id": "visitor-bad-input"}).status_code in (404, 422)
    response = post(server, "/v1/proactive/pro-abcdefgh1234/open", {"visitor_id": "visitor-bad-input"})
    assert response.status_code == 404
    response = httpx.post(f"{server.url}/v1/proactive", content=b"{", headers={"content-type": "application/json"})
    assert 400 <= response.status_code < 500


def test_one_switch_turns_proactive_messages_off(make_data_dir):
    server = Server(make_data_dir(), JOURNEY_PROACTIVE="false")
    try:
        chat(server, DECISION, "visitor-off-0001", "https://www.lumio.example/pricing")
        assert ask(server, "visitor-off-0001").json() == {"message": None, "retry_after": None}
        assert server.touchpoints(kind="proactive_shown") == []
    finally:
        server.stop()
