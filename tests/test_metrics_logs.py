"""Prometheus metrics move with traffic; every response and log line carries the request id."""

from __future__ import annotations

import json
import re
import time

import httpx


def scrape(server) -> dict[str, float]:
    response = httpx.get(f"{server.url}/metrics", timeout=30)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    values = {}
    for line in response.text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def delta(before: dict, after: dict, name: str) -> float:
    return after.get(name, 0.0) - before.get(name, 0.0)


def test_metrics_move_when_a_visitor_chats(offline_server):
    before = scrape(offline_server)
    # a question no earlier test asked: a repeated one is embedded from the cache, with no embed phase
    body = {"message": "How much does the pro plan cost per month?"}
    assert httpx.post(f"{offline_server.url}/v1/chat", json=body, timeout=60).status_code == 200
    after = scrape(offline_server)
    assert delta(before, after, 'journey_turns_total{mode="offline",outcome="ok",stage="decision"}') == 1
    assert delta(before, after, 'journey_touchpoints_total{kind="exchange"}') == 1
    assert delta(before, after, 'journey_turn_seconds_count{mode="offline"}') == 1
    for phase in ("embed", "stage", "retrieve", "record"):
        assert delta(before, after, f'journey_phase_seconds_count{{phase="{phase}"}}') >= 1, phase
    assert delta(before, after, 'journey_http_requests_total{method="POST",route="/v1/chat",status="200"}') == 1
    assert delta(before, after, 'journey_http_request_seconds_count{method="POST",route="/v1/chat"}') == 1


def test_stage_transitions_are_counted(offline_server):
    first = httpx.post(
        f"{offline_server.url}/v1/chat", json={"message": "How much does the pro plan cost?"}, timeout=60
    ).json()
    before = scrape(offline_server)
    follow = {
        "message": "My Google calendar stopped syncing with Lumio, bookings are missing",
        "conversation_id": first["conversation_id"],
        "visitor_id": first["visitor_id"],
    }
    second = httpx.post(f"{offline_server.url}/v1/chat", json=follow, timeout=60).json()
    assert second["stage"]["name"] == "support"
    after = scrape(offline_server)
    assert delta(before, after, 'journey_stage_transitions_total{from_stage="decision",to_stage="support"}') == 1


def test_unknown_paths_share_one_label(offline_server):
    httpx.get(f"{offline_server.url}/no/such/page/12345", timeout=30)
    assert "/no/such/page" not in httpx.get(f"{offline_server.url}/metrics", timeout=30).text


def test_request_id_is_echoed_and_logged_as_json(offline_server):
    rid = f"test-request-{int(time.time() * 1000)}"
    body = {"message": "Can I cancel anytime?"}
    response = httpx.post(f"{offline_server.url}/v1/chat", json=body, headers={"X-Request-ID": rid}, timeout=60)
    assert response.headers["x-request-id"] == rid
    made = httpx.get(f"{offline_server.url}/health", timeout=30).headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", made), "a request without an id gets one"
    bad = httpx.get(f"{offline_server.url}/health", headers={"X-Request-ID": "no spaces allowed"}, timeout=30)
    assert bad.headers["x-request-id"] != "no spaces allowed"
    deadline = time.monotonic() + 10
    mine: list[dict] = []
    while time.monotonic() < deadline and len(mine) < 2:
        lines = [json.loads(line) for line in offline_server.log.read_text().splitlines() if line.startswith("{")]
        mine = [line for line in lines if line.get("request_id") == rid]
        time.sleep(0.2)
    by_logger = {line["logger"]: line for line in mine}
    turn, access = by_logger["journey.turns"], by_logger["journey.access"]
    assert turn["conversation_id"] == response.json()["conversation_id"] and turn["outcome"] == "ok"
    assert access["status"] == 200 and access["route"] == "/v1/chat" and access["duration_ms"] > 0
    assert {"ts", "level", "message"} <= set(access)
