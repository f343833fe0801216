"""Live handoff through real server processes and real HTTP streams (docs/live-handoff.md)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta

import httpx
import jsonschema
import pytest
from conftest import REPO, Server, create_pg_database, free_port, local_redis_url
from sse import iter_events
from webhook_receiver import Receiver

from app.config import Settings
from app.live.hours import is_open, office_zone, parse_office_hours
from app.staff.auth import create_token
from app.store.db import make_engine, make_sessionmaker

SCHEMA = json.loads((REPO / "docs" / "webhook-event.schema.json").read_text())
PRICING = "How much does the pro plan cost?"
UNKNOWN = "What is the airspeed velocity of an unladen swallow?"
PAGE = {"url": "https://www.lumio.example/pricing?utm_source=newsletter", "title": "Pricing"}
SECRET = "a-webhook-secret-of-32-characters"


def make_tokens(settings: Settings) -> dict[str, str]:
    """viewer, two editors (Ana and Ben) and an admin in the server's database."""
    engine = make_engine(settings)
    names = {"viewer": ("Vic", "viewer"), "ana": ("Ana", "editor"), "ben": ("Ben", "editor"), "admin": ("Ada", "admin")}
    with make_sessionmaker(engine)() as session:
        tokens = {key: create_token(session=session, name=name, role=role)[1] for key, (name, role) in names.items()}
    engine.dispose()
    return tokens


class Live:
    """An open SSE connection read on a thread: every event with its id, waited for with a deadline."""

    def __init__(self, url: str, *, params: dict | None = None, headers: dict | None = None) -> None:
        self.events: list[dict] = []
        self.status: int | None = None
        self.body = b""
        self._changed = threading.Condition()
        self._client = httpx.Client(timeout=httpx.Timeout(10, read=None))
        self._thread = threading.Thread(target=self._read, args=(url, params, headers), daemon=True)
        self._thread.start()
        with self._changed:
            assert self._changed.wait_for(lambda: self.status is not None, 10), "the stream did not answer"

    def _read(self, url: str, params: dict | None, headers: dict | None) -> None:
        try:
            with self._client.stream("GET", url, params=params, headers=headers) as response:
                if response.status_code != 200:
                    self.body = response.read()
                with self._changed:
                    self.status = response.status_code
                    self.content_type = response.headers.get("content-type", "")
                    self._changed.notify_all()
                if response.status_code != 200:
                    return
                event: dict = {"id": None, "event": "message", "data": []}
                for line in response.iter_lines():
                    if line == "":
                        if event["data"]:
                            parsed = {**event, "data": json.loads("\n".join(event["data"])), "at": time.monotonic()}
                            with self._changed:
                                self.events.append(parsed)
                                self._changed.notify_all()
                        event = {"id": None, "event": "message", "data": []}
                    elif line.startswith(":"):
                        continue
                    else:
                        field, _, value = line.partition(":")
                        value = value.removeprefix(" ")
                        if field == "data":
                            event["data"].append(value)
                        elif field in ("id", "event"):
                            event[field] = value
        except (httpx.HTTPError, RuntimeError):
            pass  # closed by the test
        finally:
            with self._changed:
                if self.status is None:
                    self.status = -1
                self._changed.notify_all()

    def wait(self, kind: str, count: int = 1, timeout: float = 1.0, **match) -> list[dict]:
        """The first `count` events of `kind` (matching data fields); fails after `timeout` seconds."""

        def found() -> list[dict]:
            return [
                e for e in self.events if e["event"] == kind and all(e["data"].get(k) == v for k, v in match.items())
            ]

        with self._changed:
            ok = self._changed.wait_for(lambda: len(found()) >= count, timeout)
            assert ok, f"no {count}x {kind} {match} within {timeout}s; got {[e['event'] for e in self.events]}"
            return found()[:count]

    def kinds(self) -> list[str]:
        """Event names so far."""
        with self._changed:
            return [e["event"] for e in self.events]

    def close(self) -> None:
        """Drop the connection."""
        self._client.close()
        self._thread.join(5)


def chat(server: Server, message: str, **body) -> dict:
    response = httpx.post(f"{server.url}/v1/chat", json={"message": message, **body}, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def stream_chat(server: Server, message: str, **body) -> list[tuple[str, dict]]:
    with httpx.stream("POST", f"{server.url}/v1/chat/stream", json={"message": message, **body}, timeout=60) as r:
        assert r.status_code == 200, r.read()
        return list(iter_events(r))


def staff(server: Server, token: str, method: str, path: str, **kwargs) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"}
    return httpx.request(method, f"{server.url}/v1/staff{path}", headers=headers, timeout=30, **kwargs)


def request_handoff(server: Server, turn: dict, **body) -> httpx.Response:
    payload = {"visitor_id": turn["visitor_id"], **body}
    return httpx.post(f"{server.url}/v1/conversations/{turn['conversation_id']}/handoff", json=payload, timeout=30)


def claimed_by_ana(server: Server, tokens: dict) -> tuple[dict, str]:
    """A visitor's pricing question, handed off and claimed by ana: the turn and its conversation id."""
    turn = chat(server, PRICING)
    cid = turn["conversation_id"]
    request_handoff(server, turn).raise_for_status()
    staff(server, tokens["ana"], "POST", f"/handoffs/{cid}/claim").raise_for_status()
    return turn, cid


def visitor_live(server: Server, turn: dict, **kwargs) -> Live:
    params = {"visitor_id": turn["visitor_id"], **kwargs.pop("params", {})}
    return Live(f"{server.url}/v1/conversations/{turn['conversation_id']}/live", params=params, **kwargs)


def staff_live(server: Server, token: str, **params) -> Live:
    return Live(f"{server.url}/v1/staff/live", params=params, headers={"authorization": f"Bearer {token}"})


def ids(turn: dict) -> dict:
    return {"conversation_id": turn["conversation_id"], "visitor_id": turn["visitor_id"]}


@pytest.fixture(scope="module")
def desk(make_data_dir):
    """One server (handoffs wait 10 minutes) and its staff tokens."""
    data_dir = make_data_dir()
    tokens = make_tokens(Settings(data_dir=data_dir))
    server = Server(data_dir, JOURNEY_HANDOFF_WAIT_SECONDS="600")
    yield server, tokens
    server.stop()


def test_request_shows_in_the_queue_with_stage_journey_page_and_transcript(desk):
    server, tokens = desk
    first = chat(server, "What does Lumio do?")
    second = chat(server, PRICING, page=PAGE, **ids(first))
    response = request_handoff(server, first, message="Can someone help me pick a plan?", page=PAGE, reason="api")
    assert response.status_code == 201, response.text
    out = response.json()
    assert out["status"] == "waiting" and out["email"] is None and isinstance(out["event_id"], int)
    assert "join this chat" in out["next_steps"]
    again = request_handoff(server, first)
    assert again.status_code == 201 and again.json()["event_id"] == out["event_id"], "a second request is the same"

    queue = staff(server, tokens["viewer"], "GET", "/handoffs").json()["handoffs"]
    entry = next(h for h in queue if h["conversation_id"] == first["conversation_id"])
    assert entry["status"] == "waiting" and entry["reason"] == "api" and entry["agent"] is None
    assert entry["stage"] == second["stage"]["name"]
    assert entry["journey"][-1] == second["stage"]["name"] and entry["journey"][0] == first["stage"]["name"]
    assert entry["page"]["url"] == PAGE["url"] and entry["page"]["utm"] == {"utm_source": "newsletter"}
    assert entry["last_message"] == PRICING and 0 <= entry["waiting_seconds"] < 60
    exchanges = [t for t in entry["transcript"] if t["kind"] == "exchange"]
    assert [t["question"] for t in exchanges] == ["What does Lumio do?", PRICING]
    assert exchanges[1]["reply"] == second["reply"]
    assert [t["kind"] for t in entry["transcript"]][-1] == "handoff"
    assert queue == sorted(queue, key=lambda h: h["requested_at"], reverse=True), "newest first"

    bad = staff(server, tokens["viewer"], "GET", "/handoffs", params={"status": "waiting,nonsense"})
    assert bad.status_code == 422 and "nonsense" in bad.json()["error"]
    assert httpx.get(f"{server.url}/v1/staff/handoffs", timeout=10).status_code == 401


def test_a_second_handoff_request_keeps_its_email_and_message(desk):
    server, tokens = desk
    turn = chat(server, "What does Lumio do?")
    first = request_handoff(server, turn).json()
    assert first["email"] is None
    again = request_handoff(server, turn, email="late@example.com", message="Please call me after 5pm")
    assert again.status_code == 201 and again.json()["event_id"] == first["event_id"], "still the one request"
    assert again.json()["email"] == "late@example.com" and "late@example.com" in again.json()["next_steps"]
    queue = staff(server, tokens["viewer"], "GET", "/handoffs").json()["handoffs"]
    entry = next(h for h in queue if h["conversation_id"] == turn["conversation_id"])
    assert entry["email"] == "late@example.com" and entry["message"] == "Please call me after 5pm"
    assert entry["last_message"] == "Please call me after 5pm"
    kinds = [t["kind"] for t in server.touchpoints(conversation_id=turn["conversation_id"])]
    assert kinds == ["exchange", "handoff", "handoff_contact", "visitor_message"]


def test_claim_needs_an_editor_and_only_one_staff_member_wins(desk):
    server, tokens = desk
    turn = chat(server, PRICING)
    assert staff(server, tokens["ana"], "POST", f"/handoffs/{turn['conversation_id']}/claim").status_code == 404
    request_handoff(server, turn).raise_for_status()
    viewer = staff(server, tokens["viewer"], "POST", f"/handoffs/{turn['conversation_id']}/claim")
    assert viewer.status_code == 403
    claimed = staff(server, tokens["ana"], "POST", f"/handoffs/{turn['conversation_id']}/claim")
    assert claimed.status_code == 200 and claimed.json()["status"] == "live" and claimed.json()["agent"] == "Ana"
    second = staff(server, tokens["ben"], "POST", f"/handoffs/{turn['conversation_id']}/claim")
    assert second.status_code == 409 and second.json()["error"] == "already_claimed" and second.json()["agent"] == "Ana"
    written = staff(
        server, tokens["ben"], "POST", f"/conversations/{turn['conversation_id']}/messages", json={"text": "hi"}
    )
    assert written.status_code == 409 and written.json()["error"] == "not_claimed"

    race = chat(server, PRICING)
    request_handoff(server, race).raise_for_status()
    results: dict[str, int] = {}
    barrier = threading.Barrier(2)

    def grab(who: str) -> None:
        barrier.wait()
        results[who] = staff(server, tokens[who], "POST", f"/handoffs/{race['conversation_id']}/claim").status_code

    threads = [threading.Thread(target=grab, args=(who,)) for who in ("ana", "ben")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results.values()) == [200, 409], results
    assert len(server.touchpoints(conversation_id=race["conversation_id"], kind="handoff_claimed")) == 1


def test_a_live_conversation_flows_both_ways_and_the_bot_stays_silent(desk):
    server, tokens = desk
    turn = chat(server, PRICING, page=PAGE)
    cid = turn["conversation_id"]
    desk_stream = staff_live(server, tokens["viewer"])
    request_handoff(server, turn, message="I have a question about invoices").raise_for_status()
    desk_stream.wait("handoff.requested", conversation_id=cid)
    desk_stream.wait("queue", conversation_id=cid, status="waiting")
    visitor = visitor_live(server, turn)
    assert visitor.status == 200 and visitor.content_type.startswith("text/event-stream")
    visitor.wait("handoff.requested")
    waiting = stream_chat(server, "Is VAT included?", **ids(turn))
    assert "token" in [name for name, _ in waiting] and waiting[-1][1]["mode"] == "offline", "the bot still answers"
    desk_stream.wait("visitor.message", conversation_id=cid, text="Is VAT included?")

    assert staff(server, tokens["ana"], "POST", f"/handoffs/{cid}/claim").status_code == 200
    joined = visitor.wait("agent.joined")[0]
    assert joined["data"]["name"] == "Ana" and joined["id"] == str(joined["data"]["id"])
    desk_stream.wait("queue", conversation_id=cid, status="live")

    sent = time.monotonic()
    posted = staff(
        server,
        tokens["ana"],
        "POST",
        f"/conversations/{cid}/messages",
        json={"text": "Hi, I'm Ana. <b>How</b> can I help?"},
    )
    assert posted.status_code == 201, posted.text
    message = visitor.wait("agent.message", text="Hi, I'm Ana. <b>How</b> can I help?")[0]
    assert message["at"] - sent < 1.0, "the agent's message reached the visitor within a second"
    assert message["data"] == {**posted.json()} and message["data"]["name"] == "Ana"

    sent = time.monotonic()
    events = stream_chat(server, "Do invoices include VAT?", **ids(turn))
    assert [name for name, _ in events] == ["stage", "done"], "no tokens: the bot is silent"
    done = events[-1][1]
    assert done["reply"] == "" and done["mode"] == "human" and done["outcome"] == "human"
    heard = desk_stream.wait("visitor.message", conversation_id=cid, text="Do invoices include VAT?")[0]
    assert heard["at"] - sent < 1.0
    once = chat(server, "And for the pro plan?", **ids(turn))
    assert once["reply"] == "" and once["mode"] == "human"
    desk_stream.wait("visitor.message", conversation_id=cid, text="And for the pro plan?")

    typed = httpx.post(
        f"{server.url}/v1/conversations/{cid}/typing",
        json={"visitor_id": turn["visitor_id"], "typing": True},
        timeout=10,
    )
    assert typed.status_code == 204
    typing = desk_stream.wait("typing", conversation_id=cid, who="visitor")[0]
    assert typing["data"]["typing"] is True and typing["id"] is None, "typing is never a resume point"
    assert (
        staff(server, tokens["ana"], "POST", f"/conversations/{cid}/typing", json={"typing": True}).status_code == 204
    )
    agent_typing = visitor.wait("typing", who="agent")[0]
    assert agent_typing["data"]["name"] == "Ana" and agent_typing["id"] is None
    assert "typing" not in [e["event"] for e in visitor.events if e["data"].get("who") == "visitor"]
    assert (
        staff(server, tokens["ben"], "POST", f"/conversations/{cid}/typing", json={"typing": True}).status_code == 409
    )

    transcript = httpx.get(f"{server.url}/v1/conversations/{cid}", params={"visitor_id": turn["visitor_id"]}).json()
    assert transcript["live"]["status"] == "live" and transcript["live"]["agent"] == "Ana"
    assert [e["kind"] for e in transcript["live"]["events"]] == [
        "handoff.requested",
        "visitor.message",
        "agent.joined",
        "agent.message",
        "visitor.message",
        "visitor.message",
    ]
    kinds = [t["kind"] for t in server.touchpoints(conversation_id=cid)]
    assert kinds == [
        *["exchange", "handoff", "exchange", "handoff_claimed"],
        *["human_message", "visitor_message", "visitor_message"],
    ]
    rows = server.touchpoints(conversation_id=cid, kind="human_message")
    assert json.loads(rows[0]["data"])["name"] == "Ana"
    visitor.close()
    desk_stream.close()


def test_release_gives_the_conversation_back_to_the_bot_and_close_ends_it(desk):
    server, tokens = desk
    turn, cid = claimed_by_ana(server, tokens)
    visitor = visitor_live(server, turn)
    assert staff(server, tokens["ben"], "POST", f"/handoffs/{cid}/release").status_code == 409
    released = staff(server, tokens["ana"], "POST", f"/handoffs/{cid}/release")
    assert released.status_code == 200 and released.json()["status"] == "returned"
    back = visitor.wait("handoff.returned")[0]
    assert back["data"]["name"] == "Ana" and "assistant" in back["data"]["text"]
    events = stream_chat(server, "Is there a yearly discount?", **ids(turn))
    assert "token" in [name for name, _ in events] and events[-1][1]["mode"] == "offline" and events[-1][1]["reply"]
    assert staff(server, tokens["ana"], "POST", f"/handoffs/{cid}/release").status_code == 404
    visitor.close()

    other = chat(server, PRICING)
    request_handoff(server, other).raise_for_status()
    staff(server, tokens["ben"], "POST", f"/handoffs/{other['conversation_id']}/claim").raise_for_status()
    closed = staff(server, tokens["ben"], "POST", f"/handoffs/{other['conversation_id']}/close")
    assert closed.status_code == 200 and closed.json()["status"] == "closed"
    open_queue = staff(server, tokens["viewer"], "GET", "/handoffs").json()["handoffs"]
    assert other["conversation_id"] not in {h["conversation_id"] for h in open_queue}
    closed_queue = staff(server, tokens["viewer"], "GET", "/handoffs", params={"status": "closed"}).json()["handoffs"]
    assert {h["conversation_id"]: h["agent"] for h in closed_queue}[other["conversation_id"]] == "Ben"
    after = chat(server, "Is there a yearly discount?", **ids(other))
    assert after["mode"] == "offline" and after["reply"]
    kinds = [t["kind"] for t in server.touchpoints(conversation_id=other["conversation_id"])]
    assert kinds == ["exchange", "handoff", "handoff_claimed", "handoff_closed", "exchange"]


def test_reconnecting_with_last_event_id_loses_nothing(desk):
    server, tokens = desk
    turn, cid = claimed_by_ana(server, tokens)
    first = visitor_live(server, turn)
    last = first.wait("agent.joined")[0]["id"]
    first.close()
    texts = ["one", "two", "three"]
    for text in texts:
        staff(server, tokens["ana"], "POST", f"/conversations/{cid}/messages", json={"text": text}).raise_for_status()
    again = visitor_live(server, turn, headers={"last-event-id": last})
    got = again.wait("agent.message", count=3)
    time.sleep(0.5)
    assert [e["data"]["text"] for e in again.events] == texts, "exactly the three missed messages"
    assert [int(e["id"]) for e in got] == sorted(int(e["id"]) for e in got) and int(got[0]["id"]) > int(last)
    again.close()
    by_query = visitor_live(server, turn, params={"after": got[0]["id"]})
    assert [e["data"]["text"] for e in by_query.wait("agent.message", count=2)] == ["two", "three"]
    by_query.close()
    desk_stream = staff_live(server, tokens["viewer"], after=last)
    assert [e["data"]["text"] for e in desk_stream.wait("agent.message", count=3, conversation_id=cid)] == texts
    desk_stream.close()


def test_a_visitor_cannot_read_or_touch_another_visitors_live_conversation(desk):
    server, tokens = desk
    turn = chat(server, PRICING)
    request_handoff(server, turn).raise_for_status()
    cid = turn["conversation_id"]
    intruder = Live(f"{server.url}/v1/conversations/{cid}/live", params={"visitor_id": "intruder-visitor-1"})
    assert intruder.status == 404 and b"conversation not found" in intruder.body
    typed = httpx.post(
        f"{server.url}/v1/conversations/{cid}/typing", json={"visitor_id": "intruder-visitor-1", "typing": True}
    )
    assert typed.status_code == 404
    contact = httpx.post(
        f"{server.url}/v1/conversations/{cid}/contact",
        json={"visitor_id": "intruder-visitor-1", "email": "x@y.example"},
    )
    assert contact.status_code == 404
    assert httpx.get(f"{server.url}/v1/conversations/{cid}/live", params={"visitor_id": "x"}).status_code == 422
    assert staff(server, "jgs_wrong", "GET", "/live").status_code == 401


def test_open_live_streams_are_limited_per_visitor_and_per_address(desk):
    server, _ = desk  # defaults: 4 streams per visitor, 20 per address (JOURNEY_LIVE_STREAMS_PER_*)
    client = httpx.Client(timeout=httpx.Timeout(10, read=None), limits=httpx.Limits(max_connections=40))

    def open_stream(turn: dict) -> httpx.Response:
        url = f"{server.url}/v1/conversations/{turn['conversation_id']}/live"
        response = client.send(client.build_request("GET", url, params={"visitor_id": turn["visitor_id"]}), stream=True)
        if response.status_code != 200:
            response.read()
        return response

    def opens_again(turn: dict) -> httpx.Response:
        """A new stream once the server has seen a closed one go (it notices the disconnect)."""
        deadline = time.monotonic() + 10
        while (response := open_stream(turn)).status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        return response

    turn = chat(server, PRICING)
    mine = [open_stream(turn) for _ in range(4)]
    try:
        assert [r.status_code for r in mine] == [200] * 4
        refused = open_stream(turn)
        assert refused.status_code == 429 and refused.headers["retry-after"], refused.text
        assert "too many live streams open from this visitor: at most 4" in refused.json()["detail"]
        mine.pop().close()
        mine.append(opens_again(turn))
        assert mine[-1].status_code == 200, "a closed stream gives its slot back"
        while len(mine) <= 20:  # other visitors from the same address, until the address is full
            other = open_stream(last := chat(server, PRICING))
            if other.status_code != 200:
                break
            mine.append(other)
        assert other.status_code == 429 and len(mine) <= 20, (len(mine), other.status_code)
        assert "from this network address: at most 20" in other.json()["detail"]
        mine.pop().close()
        mine.append(opens_again(last))
        assert mine[-1].status_code == 200, "the address's slot is back too"
    finally:
        for response in mine:
            response.close()
        client.close()


def test_the_bot_asks_for_a_person_when_the_visitor_wants_one_or_it_cannot_answer(desk):
    server, tokens = desk
    plain = chat(server, "This is useless, can I talk to a human please?")
    assert plain["handoff"] == {"suggested": True, "reason": "bot_frustrated", "requested": True, "status": "waiting"}
    assert "join this chat" in plain["next_steps"], "POST /v1/chat says what happens next, as the stream does"
    queue = staff(server, tokens["viewer"], "GET", "/handoffs").json()["handoffs"]
    assert {h["conversation_id"]: h["reason"] for h in queue}[plain["conversation_id"]] == "bot_frustrated"

    first = chat(server, UNKNOWN)
    assert first["handoff"] == {"suggested": True, "reason": "no_answer"}, "one unanswered turn is not enough"
    second = chat(server, "What is the capital of Mongolia in the year 1200?", **ids(first))
    assert second["handoff"]["requested"] is True and second["handoff"]["reason"] == "bot_no_answer"
    assert len(server.touchpoints(conversation_id=first["conversation_id"], kind="handoff")) == 1

    rated = chat(server, PRICING)
    for message in ("Is there a yearly discount?", "Can I pay by invoice?"):
        reply = chat(server, message, **ids(rated))
        body = {"visitor_id": rated["visitor_id"], "message_id": reply["message_id"], "rating": "down"}
        httpx.post(f"{server.url}/v1/conversations/{rated['conversation_id']}/feedback", json=body).raise_for_status()
    after = chat(server, "How do I cancel?", **ids(rated))
    assert after["handoff"]["reason"] == "bot_frustrated" and after["handoff"]["requested"] is True


def test_analytics_count_bot_and_human_resolutions(desk):
    server, tokens = desk
    since = datetime.now(UTC).isoformat()
    chat(server, PRICING)  # the bot resolves it
    human = chat(server, PRICING)
    request_handoff(server, human).raise_for_status()
    staff(server, tokens["ana"], "POST", f"/handoffs/{human['conversation_id']}/claim").raise_for_status()
    staff(server, tokens["ana"], "POST", f"/handoffs/{human['conversation_id']}/close").raise_for_status()
    waiting = chat(server, PRICING)
    request_handoff(server, waiting).raise_for_status()
    data = staff(server, tokens["viewer"], "GET", "/analytics", params={"since": since}).json()
    assert data["resolution"] == {"bot_resolved": 1, "human_resolved": 1, "unresolved_handoffs": 1}


# -- office hours and the unclaimed timeout, with webhooks ----------------------------------------------------------


def closed_now() -> str:
    """Office hours that exclude the present moment: a one-hour window three days from now."""
    day = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[(datetime.now(UTC).weekday() + 3) % 7]
    return f"{day} 09:00-10:00"


def test_outside_office_hours_the_visitor_is_told_honestly_and_staff_can_still_claim(make_data_dir):
    data_dir = make_data_dir()
    port = free_port()
    hours = closed_now()
    env = {
        "JOURNEY_OFFICE_HOURS": hours,
        "JOURNEY_OFFICE_TIMEZONE": "Europe/Paris",
        "JOURNEY_WEBHOOK_URLS": f"http://127.0.0.1:{port}/hooks/journey",
        "JOURNEY_WEBHOOK_SECRET": SECRET,
        "JOURNEY_WEBHOOK_POLL_INTERVAL": "0.2",
        "JOURNEY_WEBHOOK_BACKOFF_BASE": "0.2",
    }
    tokens = make_tokens(Settings(data_dir=data_dir))
    with Receiver(port) as receiver:
        server = Server(data_dir, **env)
        try:
            turn = chat(server, PRICING)
            out = request_handoff(server, turn, message="I need help").json()
            assert out["status"] == "unavailable" and out["email"] is None
            assert "no one" in out["next_steps"] and hours in out["next_steps"] and "Europe/Paris" in out["next_steps"]
            assert "email" in out["next_steps"]
            visitor = visitor_live(server, turn)
            notice = visitor.wait("handoff.unavailable")[0]["data"]
            assert notice["reason"] == "office_hours" and notice["text"] == out["next_steps"]
            queue = staff(server, tokens["viewer"], "GET", "/handoffs").json()["handoffs"]
            assert [(h["conversation_id"], h["status"]) for h in queue] == [(turn["conversation_id"], "unavailable")]
            given = httpx.post(
                f"{server.url}/v1/conversations/{turn['conversation_id']}/contact",
                json={"visitor_id": turn["visitor_id"], "email": " ana@salon.example "},
            )
            assert given.status_code == 200 and given.json()["email"] == "ana@salon.example"
            assert (
                staff(server, tokens["viewer"], "GET", "/handoffs").json()["handoffs"][0]["email"]
                == "ana@salon.example"
            )
            bad = httpx.post(
                f"{server.url}/v1/conversations/{turn['conversation_id']}/contact",
                json={"visitor_id": turn["visitor_id"], "email": "nope"},
            )
            assert bad.status_code == 422
            assert staff(server, tokens["ana"], "POST", f"/handoffs/{turn['conversation_id']}/claim").status_code == 200
            visitor.wait("agent.joined")
            staff(server, tokens["ana"], "POST", f"/handoffs/{turn['conversation_id']}/close").raise_for_status()
            visitor.close()

            wanted = [
                "handoff.requested",
                "handoff.unavailable",
                "handoff.contact",
                "handoff.claimed",
                "handoff.closed",
            ]
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                types = [r["headers"]["x-journey-event-type"] for r in receiver.accepted]
                if all(t in types for t in wanted):
                    break
                time.sleep(0.2)
            bodies = {}
            for request in receiver.accepted:
                body = json.loads(request["body"])
                jsonschema.validate(body, SCHEMA)
                bodies.setdefault(body["type"], []).append(body["data"])
            assert all(len(bodies.get(t, [])) == 1 for t in wanted), {t: len(v) for t, v in bodies.items()}
            assert bodies["handoff.requested"][0]["message"] == "I need help"
            assert bodies["handoff.unavailable"][0]["reason"] == "office_hours"
            assert bodies["handoff.unavailable"][0]["text"] == out["next_steps"]
            assert bodies["handoff.contact"][0]["email"] == "ana@salon.example"
            assert bodies["handoff.claimed"][0]["agent"] == "Ana" and bodies["handoff.closed"][0]["agent"] == "Ana"
            assert all(d["conversation_id"] == turn["conversation_id"] for v in bodies.values() for d in v)
        finally:
            server.stop()


def test_a_request_nobody_claims_in_time_becomes_unavailable(make_data_dir):
    data_dir = make_data_dir()
    tokens = make_tokens(Settings(data_dir=data_dir))
    server = Server(data_dir, JOURNEY_HANDOFF_WAIT_SECONDS="1")
    try:
        turn = chat(server, PRICING, identity={"email": "owner@glow.example"})
        out = request_handoff(server, turn).json()
        assert out["status"] == "waiting" and out["email"] == "owner@glow.example"
        visitor = visitor_live(server, turn)
        notice = visitor.wait("handoff.unavailable", timeout=5)[0]["data"]
        assert notice["reason"] == "timeout" and "owner@glow.example" in notice["text"]
        time.sleep(1.5)
        assert visitor.kinds() == ["handoff.requested", "handoff.unavailable"], "announced once"
        entry = staff(server, tokens["viewer"], "GET", "/handoffs").json()["handoffs"][0]
        assert entry["status"] == "unavailable" and entry["conversation_id"] == turn["conversation_id"]
        assert len(server.touchpoints(conversation_id=turn["conversation_id"], kind="handoff_unavailable")) == 1
        server.stop()  # a stopping server ends its live streams cleanly (the client resumes on another worker)
        visitor._thread.join(5)
        assert not visitor._thread.is_alive(), "the stream ended when the server stopped"
        assert "without completing response" not in server.log.read_text()
    finally:
        server.stop()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_marking_a_timed_out_request_followed_up_resolves_the_conversation(make_data_dir, backend):
    data_dir = make_data_dir()
    env, drop = {"JOURNEY_HANDOFF_WAIT_SECONDS": "1"}, None
    if backend == "postgresql":  # its own database: the test lists the resolved conversations
        env["JOURNEY_DATABASE_URL"], drop = create_pg_database()
    tokens = make_tokens(Settings(data_dir=data_dir, database_url=env.get("JOURNEY_DATABASE_URL")))
    server = Server(data_dir, **env)
    try:
        turn = chat(server, PRICING, identity={"email": "owner@glow.example"})
        cid = turn["conversation_id"]
        request_handoff(server, turn, message="Can someone call me?").raise_for_status()
        assert staff(server, tokens["ana"], "POST", f"/handoffs/{cid}/follow-up").status_code == 409, "still waiting"
        visitor = visitor_live(server, turn)
        visitor.wait("handoff.unavailable", timeout=5)
        path = f"/handoffs/{cid}/follow-up"
        assert staff(server, tokens["viewer"], "POST", path).status_code == 403
        assert staff(server, tokens["ana"], "POST", path, json={"status": "snoozed"}).status_code == 422
        done = staff(server, tokens["ana"], "POST", path)
        assert done.status_code == 200, done.text
        assert done.json()["status"] == "closed" and done.json()["conversation_status"] == "resolved"
        told = visitor.wait("handoff.closed")[0]["data"]
        assert told["text"] == "Ana from our team followed up on your request by email to owner@glow.example."
        assert staff(server, tokens["viewer"], "GET", "/handoffs").json()["handoffs"] == [], "no task left"
        assert staff(server, tokens["ana"], "POST", path).status_code == 404, "nothing left to follow up"

        transcript = staff(server, tokens["viewer"], "GET", f"/conversations/{cid}").json()
        assert transcript["status"] == "resolved"
        change = [e for e in transcript["events"] if e["kind"] == "status"][-1]["data"]
        assert change == {"status": "resolved", "previous": "open", "until": None, "by": "Ana", "reason": "followed_up"}
        closed = [e for e in transcript["events"] if e["kind"] == "handoff_closed"][-1]["data"]
        assert closed["followed_up"] is True and closed["name"] == "Ana"
        listed = staff(server, tokens["viewer"], "GET", "/conversations", params={"status": "resolved"}).json()
        assert [c["id"] for c in listed["items"]] == [cid]
        exported = staff(server, tokens["ana"], "GET", "/export", params={"visitor_id": turn["visitor_id"]}).text
        assert '"reason": "followed_up"' in exported or '"reason":"followed_up"' in exported

        chat(server, "Thanks, got your email. One more thing: is VAT included?", **ids(turn))
        assert staff(server, tokens["viewer"], "GET", f"/conversations/{cid}").json()["status"] == "open", (
            "the visitor coming back reopens it"
        )

        other = chat(server, PRICING)
        request_handoff(server, other).raise_for_status()
        deadline = time.monotonic() + 10
        while (
            staff(server, tokens["viewer"], "GET", "/handoffs", params={"status": "unavailable"}).json()["handoffs"]
            == []
            and time.monotonic() < deadline
        ):
            time.sleep(0.2)
        pending = staff(
            server, tokens["ana"], "POST", f"/handoffs/{other['conversation_id']}/follow-up", json={"status": "pending"}
        )
        assert pending.json()["conversation_status"] == "pending", pending.text
        assert (
            staff(server, tokens["viewer"], "GET", f"/conversations/{other['conversation_id']}").json()["status"]
            == "pending"
        )
        visitor.close()
    finally:
        server.stop()
        if drop is not None:
            drop()


def test_internal_notes_reach_staff_streams_and_never_the_visitor(desk):
    server, tokens = desk
    turn, cid = claimed_by_ana(server, tokens)
    visitor = visitor_live(server, turn)
    visitor.wait("agent.joined")
    desk_stream = staff_live(server, tokens["viewer"])
    secret = "Internal: churn risk, owner is ZANZIBAR-7731 <b>VIP</b>"
    made = staff(server, tokens["ana"], "POST", f"/conversations/{cid}/notes", json={"text": secret})
    assert made.status_code == 201, made.text
    heard = desk_stream.wait("note", conversation_id=cid)[0]
    assert heard["data"]["note"]["text"] == secret and heard["data"]["note"]["author"] == "Ana"
    assert heard["id"] is None, "a note is never a resume point"
    staff(server, tokens["ana"], "POST", f"/conversations/{cid}/messages", json={"text": "Checking that now."})
    visitor.wait("agent.message", text="Checking that now.")  # sent after the note: the note would be here by now
    listed = staff(server, tokens["viewer"], "GET", f"/conversations/{cid}/notes")
    assert listed.status_code == 200 and [n["text"] for n in listed.json()["notes"]] == [secret]
    assert staff(server, tokens["viewer"], "GET", "/conversations/nope-nope/notes").status_code == 404

    replay = visitor_live(server, turn, params={"after": 0})  # everything the visitor could ever read again
    replay.wait("agent.message", text="Checking that now.")
    history = httpx.get(f"{server.url}/v1/conversations/{cid}", params={"visitor_id": turn["visitor_id"]}, timeout=30)
    streamed = stream_chat(server, "Is VAT included?", **ids(turn))
    seen = [json.dumps(e) for e in visitor.events + replay.events] + [history.text, json.dumps(streamed)]
    assert "note" not in visitor.kinds() + replay.kinds()
    assert not [text for text in seen if "ZANZIBAR" in text or "churn" in text]
    for stream in (visitor, replay, desk_stream):
        stream.close()
    staff(server, tokens["ana"], "POST", f"/handoffs/{cid}/close").raise_for_status()


# -- two workers ------------------------------------------------------------------------------------------------


def test_two_workers_sharing_redis_and_postgresql_carry_one_conversation(make_data_dir, pg_url):
    redis = local_redis_url(12)  # this module's own database: test files run side by side
    env = {"JOURNEY_DATABASE_URL": pg_url, "JOURNEY_REDIS_URL": redis, "JOURNEY_HANDOFF_WAIT_SECONDS": "1"}
    first_dir, second_dir = make_data_dir(), make_data_dir()
    tokens = make_tokens(Settings(data_dir=first_dir, database_url=pg_url))
    a = Server(first_dir, **env)
    b = Server(second_dir, **env)
    try:
        turn = chat(a, PRICING)
        cid = turn["conversation_id"]
        desk_stream = staff_live(b, tokens["viewer"])
        request_handoff(a, turn).raise_for_status()
        desk_stream.wait("handoff.requested", conversation_id=cid)
        desk_stream.wait("handoff.unavailable", conversation_id=cid, timeout=5)  # both workers sweep; one announces
        visitor = visitor_live(a, turn)
        staff(b, tokens["ana"], "POST", f"/handoffs/{cid}/claim").raise_for_status()
        visitor.wait("agent.joined")

        sent = time.monotonic()
        staff(
            b, tokens["ana"], "POST", f"/conversations/{cid}/messages", json={"text": "Hello from B"}
        ).raise_for_status()
        assert visitor.wait("agent.message", text="Hello from B")[0]["at"] - sent < 1.0
        sent = time.monotonic()
        assert chat(a, "Hello from A", **ids(turn))["mode"] == "human"
        assert desk_stream.wait("visitor.message", conversation_id=cid, text="Hello from A")[0]["at"] - sent < 1.0
        sent = time.monotonic()
        staff(b, tokens["ana"], "POST", f"/conversations/{cid}/typing", json={"typing": True}).raise_for_status()
        assert visitor.wait("typing", who="agent")[0]["at"] - sent < 1.0

        time.sleep(1.5)
        unavailable = [e for e in desk_stream.events if e["event"] == "handoff.unavailable"]
        assert len(unavailable) == 1, "only one worker announced the timeout"

        def agent_says(prefix: str) -> None:
            for i in range(5):
                body = {"text": f"{prefix} {i}"}
                staff(b, tokens["ana"], "POST", f"/conversations/{cid}/messages", json=body).raise_for_status()

        def visitor_says(prefix: str) -> None:
            for i in range(5):
                assert chat(a, f"{prefix} {i}", **ids(turn))["mode"] == "human"

        writers = [threading.Thread(target=agent_says, args=(f"agent-{n}",)) for n in range(2)]
        writers += [threading.Thread(target=visitor_says, args=(f"visitor-{n}",)) for n in range(2)]
        for writer in writers:
            writer.start()
        for writer in writers:
            writer.join(60)
        visitor.wait("agent.message", count=11, timeout=5)
        desk_stream.wait("visitor.message", count=11, timeout=5, conversation_id=cid)
        desk_stream.wait("agent.message", count=11, timeout=5, conversation_id=cid)
        stored = [int(e["id"]) for e in desk_stream.events if e["id"] is not None]
        assert stored == sorted(stored) and len(stored) == len(set(stored)), "ids arrive in order, each once"
        said = {e["data"]["text"] for e in desk_stream.events if e["event"] in ("agent.message", "visitor.message")}
        assert {f"{who}-{n} {i}" for who in ("agent", "visitor") for n in range(2) for i in range(5)} <= said
        replay = staff_live(a, tokens["viewer"], after=0)  # the other worker, from the start: the same log
        replay.wait("agent.message", count=11, timeout=5, conversation_id=cid)
        replay.wait("visitor.message", count=11, timeout=5, conversation_id=cid)
        seen = [e["id"] for e in desk_stream.events if e["id"] is not None and e["data"]["conversation_id"] == cid]
        replayed = [e["id"] for e in replay.events if e["id"] is not None and e["data"]["conversation_id"] == cid]
        assert replayed == seen
        replay.close()
        visitor.close()
        desk_stream.close()
    finally:
        a.stop()
        b.stop()


# -- office hours ------------------------------------------------------------------------------------------------


def test_office_hours_are_read_in_the_office_time_zone():
    windows = parse_office_hours("mon-fri 09:00-17:30; sat 10:00-14:00")
    paris = office_zone("Europe/Paris")
    monday_morning = datetime(2026, 11, 30, 8, 30, tzinfo=UTC)  # 09:30 in Paris (UTC+1 in winter)
    assert is_open(windows, paris, monday_morning)
    assert not is_open(windows, office_zone("UTC"), monday_morning), "08:30 in UTC is before opening"
    assert is_open(windows, office_zone("UTC"), monday_morning + timedelta(minutes=30)), "09:00 opens"
    assert not is_open(windows, paris, datetime(2026, 11, 30, 16, 30, tzinfo=UTC)), "17:30 in Paris is closed"
    assert is_open(windows, paris, datetime(2026, 12, 5, 12, 0, tzinfo=UTC)), "Saturday 13:00 in Paris"
    assert not is_open(windows, paris, datetime(2026, 12, 6, 12, 0, tzinfo=UTC)), "Sunday"
    assert is_open(parse_office_hours(""), paris, monday_morning), "no hours: always open"
    assert len(parse_office_hours("fri-mon 10:00-11:00")) == 4, "a range may wrap over the weekend"
    for bad in ("monday 9-5", "mon-fri 09:00", "xyz 09:00-10:00", "mon 10:00-09:00", "mon 25:00-26:00"):
        with pytest.raises(ValueError):
            parse_office_hours(bad)
    with pytest.raises(ValueError, match="Mars/Base"):
        office_zone("Mars/Base")


def _redis_server(port: int) -> subprocess.Popen:
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return process
        time.sleep(0.1)
    process.kill()
    raise RuntimeError("redis-server did not start")


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs the redis-server binary to stop and restart")
def test_live_delivery_survives_redis_going_away_and_is_fast_again_when_it_returns(make_data_dir, tmp_path):
    port = free_port()
    redis_process = _redis_server(port)
    shared = f"sqlite:///{tmp_path / 'shared.db'}"  # two processes on one SQLite file
    env = {"JOURNEY_DATABASE_URL": shared, "JOURNEY_REDIS_URL": f"redis://127.0.0.1:{port}/0"}
    first_dir, second_dir = make_data_dir(), make_data_dir()
    tokens = make_tokens(Settings(data_dir=first_dir, database_url=shared))
    a, b = Server(first_dir, **env), Server(second_dir, **env)
    try:
        turn = chat(a, PRICING)
        cid = turn["conversation_id"]
        request_handoff(a, turn).raise_for_status()
        staff(b, tokens["ana"], "POST", f"/handoffs/{cid}/claim").raise_for_status()
        visitor = visitor_live(a, turn)
        visitor.wait("agent.joined", timeout=3)

        def send(text: str) -> float:
            sent = time.monotonic()
            body = {"text": text}
            assert staff(b, tokens["ana"], "POST", f"/conversations/{cid}/messages", json=body).status_code == 201
            return visitor.wait("agent.message", text=text, timeout=5)[0]["at"] - sent

        assert send("with redis") < 1.0
        redis_process.terminate()
        redis_process.wait(10)
        assert send("redis is down") < 3.0, "the 2 s poll still delivers"
        redis_process = _redis_server(port)
        deadline, fast = time.monotonic() + 20, 0
        while fast < 3 and time.monotonic() < deadline:
            fast = fast + 1 if send(f"redis is back {time.monotonic()}") < 0.5 else 0
        assert fast == 3, "three messages in a row in under 0.5 s: the workers are subscribed again"
        visitor.close()
    finally:
        a.stop()
        b.stop()
        redis_process.kill()
