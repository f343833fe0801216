"""Issue 17, privacy of evidence: a staff correction makes visitor A's message a learned example; visitor B's
evidence must never show it, staff still see it, and erasing A removes it from B's stored turns.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from conftest import REPO, Server
from sse import parse_events

from app.config import Settings
from app.staff.auth import create_token
from app.staff.models import ROLES
from app.stages.config import load_journey
from app.stages.detector import TOP_K
from app.store.db import make_engine, make_sessionmaker

A_MESSAGE = "my calendar sync stopped working and bookings are missing, ana.lopez@example.com 415-555-0134"
A_PRIVATE = ("ana.lopez", "415-555-0134", "555-0134", "missing, ana")
B_MESSAGE = "my calendar sync stopped working and bookings are missing"
CONFIGURED = {text for stage in load_journey(REPO / "knowledge" / "stages.yaml").stages for text in stage.examples}


@pytest.fixture()
def corrected(make_data_dir) -> Iterator[tuple[Server, dict[str, str], dict]]:
    """A fresh server where staff corrected visitor A's message (with an email and a phone number) to support."""
    server = Server(make_data_dir())  # on PostgreSQL with JOURNEY_TEST_POSTGRES=1
    try:
        tokens = make_tokens(server)
        a_turn = chat(server, A_MESSAGE, visitor_id="visitor-a-privacy")
        path = f"/touchpoints/{a_turn['message_id']}/stage"
        assert api(server, tokens["editor"], "PUT", path, json={"stage": "support"}).status_code == 200
        yield server, tokens, a_turn
    finally:
        server.stop()


def make_tokens(server: Server) -> dict[str, str]:
    """A viewer, an editor and an admin token in the server's database."""
    engine = make_engine(Settings(data_dir=server.data_dir, database_url=server.database_url))
    with make_sessionmaker(engine)() as session:
        tokens = {role: create_token(session=session, name=f"{role}@lumio.example", role=role)[1] for role in ROLES}
    engine.dispose()
    return tokens


def api(server: Server, token: str, method: str, path: str, **kwargs) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"}
    return httpx.request(method, f"{server.url}/v1/staff{path}", headers=headers, timeout=30, **kwargs)


def chat(server: Server, message: str, **body) -> dict:
    response = httpx.post(f"{server.url}/v1/chat", json={"message": message, **body}, timeout=30)
    response.raise_for_status()
    return response.json()


def post_raw(server: Server, path: str, body: dict) -> str:
    """The whole response body as sent on the wire."""
    response = httpx.post(f"{server.url}{path}", json=body, timeout=60)
    assert response.status_code == 200, response.text
    return response.text


def assert_no_words_of_a(raw: str) -> None:
    for fragment in (A_MESSAGE, *A_PRIVATE):
        assert fragment not in raw, f"{fragment!r} of visitor A's message is still there"


def assert_configured_examples(stage: dict) -> None:
    """Visitors' `example` evidence: only examples of stages.yaml, still TOP_K of them."""
    texts = [e["text"] for e in stage["evidence"] if e["type"] == "example"]
    assert len(texts) == TOP_K and set(texts) <= CONFIGURED, texts


def staff_evidence(server: Server, tokens: dict[str, str], conversation_id: str) -> list[list[dict]]:
    """The stored evidence of every turn of a conversation, as staff read it."""
    transcript = api(server, tokens["viewer"], "GET", f"/conversations/{conversation_id}").json()
    return [turn["stage"]["evidence"] for turn in transcript["turns"]]


def test_visitors_never_see_a_corrected_visitors_words(corrected):
    server, tokens, _ = corrected
    once = post_raw(server, "/v1/chat", {"message": B_MESSAGE, "visitor_id": "visitor-b-chat"})
    assert_no_words_of_a(once)
    reply = json.loads(once)
    assert reply["stage"]["name"] == "support"
    assert_configured_examples(reply["stage"])
    [stored] = staff_evidence(server, tokens, reply["conversation_id"])
    learned = [e for e in stored if e.get("text") == A_MESSAGE]
    assert learned and all(e["learned"] for e in learned), "staff still see the learned example behind the stage"

    streamed = post_raw(server, "/v1/chat/stream", {"message": B_MESSAGE, "visitor_id": "visitor-b-stream"})
    assert_no_words_of_a(streamed)
    events = dict(parse_events(streamed))
    assert_configured_examples(events["stage"])
    assert events["done"]["stage"] == events["stage"]

    completion = {"model": "journey-guide", "messages": [{"role": "user", "content": B_MESSAGE}]}
    plain = post_raw(server, "/v1/chat/completions", {**completion, "user": "visitor-b-openai"})
    assert_no_words_of_a(plain)
    assert_configured_examples(json.loads(plain)["journey"]["stage"])
    chunks = post_raw(server, "/v1/chat/completions", {**completion, "user": "visitor-b-openai-2", "stream": True})
    assert_no_words_of_a(chunks)
    first = json.loads(next(line for line in chunks.splitlines() if line.startswith("data:"))[5:])
    assert_configured_examples(first["journey"]["stage"])


def test_erasing_a_visitor_removes_their_words_from_other_turns(corrected):
    server, tokens, a_turn = corrected
    b_turn = chat(server, B_MESSAGE, visitor_id="visitor-b-erasure")
    [before] = staff_evidence(server, tokens, b_turn["conversation_id"])
    assert any(e.get("text") == A_MESSAGE for e in before), "the learned example is stored with B's turn"

    erased = api(server, tokens["admin"], "DELETE", f"/visitors/{a_turn['visitor_id']}")
    assert erased.status_code == 200

    [after] = staff_evidence(server, tokens, b_turn["conversation_id"])
    assert_no_words_of_a(json.dumps(after))
    assert erased.json()["erased"]["quoted_elsewhere"] == 1
    assert any(e.get("erased") and e["learned"] for e in after), "staff see that a learned example counted"
    assert [e for e in after if e.get("text") in CONFIGURED] == [e for e in before if e.get("text") in CONFIGURED]
    for row in server.touchpoints():
        assert_no_words_of_a(json.dumps(row))
    again = chat(server, B_MESSAGE, visitor_id="visitor-b-erasure", conversation_id=b_turn["conversation_id"])
    [_, newest] = staff_evidence(server, tokens, again["conversation_id"])
    assert not any(e.get("learned") for e in newest), "the erased visitor's correction no longer trains the detector"
