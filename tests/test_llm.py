"""The LLM path against a fake OpenAI-compatible server on localhost: prompts, streaming, faults."""

from __future__ import annotations

import json
import time

import httpx
import yaml
from conftest import REPO
from fake_llm import stage_vote_or
from sse import iter_events, stream_chat

PRICING = {"message": "How much does the pro plan cost?"}
STAGES = {s["name"]: s for s in yaml.safe_load((REPO / "knowledge" / "stages.yaml").read_text())["stages"]}


def _words(text: str) -> str:
    return " ".join(text.split())


def test_llm_answer_is_streamed_and_grounded(llm_server, fake_llm):
    fake_llm.reply = "The Pro plan costs $29 per staff calendar per month [1]."
    events = stream_chat(llm_server.url, PRICING)
    names = [n for n, _ in events]
    assert names[0] == "stage" and names[-1] == "done"
    tokens = "".join(d["text"] for n, d in events if n == "token")
    assert tokens == fake_llm.reply
    done = events[-1][1]
    assert done["reply"] == fake_llm.reply
    assert done["mode"] == "llm" and done["model"] == "fake-model" and done["outcome"] == "ok"
    assert done["sources"] and done["sources"][0]["id"].startswith("pricing/")
    request = fake_llm.requests[-1]
    assert request["stream"] is True and request["model"] == "fake-model"
    assert (request.get("max_tokens") or request.get("max_completion_tokens")) == 600
    system, prompt = request["messages"][0]["content"], request["messages"][-1]["content"]
    assert request["messages"][0]["role"] == "system" and "Lumio" in system
    assert "<documents>" in prompt and 'source="pricing/' in prompt
    assert "<visitor_message>\nHow much does the pro plan cost?\n</visitor_message>" in prompt
    assert "decision" in prompt.lower()
    row = llm_server.touchpoints(id=done["message_id"])[0]
    assert row["mode"] == "llm" and row["model"] == "fake-model" and row["outcome"] == "ok"


def test_llm_sees_earlier_turns(llm_server, fake_llm):
    first = httpx.post(f"{llm_server.url}/v1/chat", json=PRICING, timeout=30).json()
    follow = {
        "message": "And is there a discount if I pay for a year?",
        "conversation_id": first["conversation_id"],
        "visitor_id": first["visitor_id"],
    }
    httpx.post(f"{llm_server.url}/v1/chat", json=follow, timeout=30).raise_for_status()
    messages = fake_llm.requests[-1]["messages"]
    assert [m["role"] for m in messages[:3]] == ["system", "user", "assistant"]
    assert messages[1]["content"] == PRICING["message"]
    assert messages[2]["content"] == first["reply"].replace(" [1]", "")


def test_earlier_citation_markers_do_not_reach_the_llm(llm_server, fake_llm):
    fake_llm.reply = "The Pro plan costs $29 per staff calendar per month [1]. Starter is $12 [2][3]. See [1, 2]."
    first = httpx.post(f"{llm_server.url}/v1/chat", json=PRICING, timeout=30).json()
    assert "[2][3]" in first["reply"], "the visitor's reply keeps its citations"
    follow = {
        "message": "How do I cancel my subscription?",
        "conversation_id": first["conversation_id"],
        "visitor_id": first["visitor_id"],
    }
    httpx.post(f"{llm_server.url}/v1/chat", json=follow, timeout=30).raise_for_status()
    messages = fake_llm.requests[-1]["messages"]
    assert messages[2]["role"] == "assistant"
    assert messages[2]["content"] == "The Pro plan costs $29 per staff calendar per month. Starter is $12. See."
    assert "[1]" not in "".join(m["content"] for m in messages[1:-1]), "only the new documents' numbers remain"


def test_llm_error_falls_back_to_offline_answer(llm_server, fake_llm):
    fake_llm.mode = "error"
    response = httpx.post(f"{llm_server.url}/v1/chat", json=PRICING, timeout=30)
    assert response.status_code == 200
    data = response.json()
    assert data["mode"] == "offline" and data["outcome"] == "llm_error"
    assert "$29" in data["reply"] and data["sources"]
    row = llm_server.touchpoints(id=data["message_id"])[0]
    assert row["outcome"] == "llm_error" and "500" in row["error"]


def test_slow_llm_times_out_to_offline_answer(llm_server, fake_llm):
    fake_llm.mode, fake_llm.delay = "slow", 10
    events = stream_chat(llm_server.url, PRICING)
    done = events[-1][1]
    assert [n for n, _ in events][-1] == "done"
    assert done["outcome"] == "llm_timeout" and done["mode"] == "offline"
    assert "".join(d["text"] for n, d in events if n == "token") == done["reply"]
    assert done["latency_ms"] < 6000


def test_stalled_stream_ends_with_offline_reply_in_done(llm_server, fake_llm):
    fake_llm.mode, fake_llm.delay = "stall", 10
    events = stream_chat(llm_server.url, PRICING)
    done = events[-1][1]
    assert done["outcome"] == "llm_timeout"
    assert "$29" in done["reply"], "done carries the grounded offline answer that replaces the partial one"
    row = llm_server.touchpoints(id=done["message_id"])[0]
    assert row["reply"] == done["reply"] and row["outcome"] == "llm_timeout"


def test_malformed_and_dropped_streams_fall_back(llm_server, fake_llm):
    for mode in ("malformed", "drop"):
        fake_llm.mode = mode
        done = stream_chat(llm_server.url, PRICING)[-1][1]
        assert done["outcome"] == "llm_error", (mode, done)
        assert done["mode"] == "offline" and "$29" in done["reply"]


def test_client_disconnect_mid_stream_leaves_a_touchpoint(llm_server, fake_llm):
    fake_llm.mode, fake_llm.delay = "stall", 2
    body = {"message": "Tell me about the Pro plan price"}
    with httpx.stream("POST", f"{llm_server.url}/v1/chat/stream", json=body, timeout=30) as response:
        for name, _data in iter_events(response):
            if name == "token":
                break  # leaving the block closes the connection mid-stream
    deadline = time.monotonic() + 10
    rows: list[dict] = []
    while time.monotonic() < deadline and not rows:
        rows = [r for r in llm_server.touchpoints(outcome="client_disconnected") if r["question"] == body["message"]]
        time.sleep(0.2)
    assert len(rows) == 1
    assert rows[0]["reply"], "the part of the reply that was generated is kept"
    assert fake_llm.reply.startswith(rows[0]["reply"].strip())


def test_offline_mode_sends_nothing_to_llm(offline_server, fake_llm):
    httpx.post(f"{offline_server.url}/v1/chat", json=PRICING, timeout=30).raise_for_status()
    assert fake_llm.requests == []


def _stage_vote_or_answer(stage: str, answer: str):
    """A fake reply: a JSON stage vote for structured-output requests, the answer text otherwise."""

    def reply(body: dict) -> str:
        if body.get("response_format", {}).get("type") == "json_schema":
            return json.dumps({"stage": stage, "confidence": 0.95, "reason": "the visitor says it is broken"})
        return answer

    return reply


def test_llm_stage_vote_is_weighed_in(llm_server, fake_llm):
    message = {"message": "tell me about the reports"}
    fake_llm.reply = _stage_vote_or_answer("support", "Reports are under Insights [1].")
    with_vote = httpx.post(f"{llm_server.url}/v1/chat", json=message, timeout=30).json()
    classify = [r for r in fake_llm.requests if r.get("response_format")]
    assert classify, "the stage classification request reached the LLM"
    schema = json.dumps(classify[-1]["response_format"])
    for name in ("awareness", "support", "advocacy"):
        assert name in schema, "the JSON schema lists the configured stages"
    assert "tell me about the reports" in classify[-1]["messages"][-1]["content"]
    llm_evidence = [e for e in with_vote["stage"]["evidence"] if e["type"] == "llm"]
    assert llm_evidence == [
        {"type": "llm", "stage": "support", "confidence": 0.95, "detail": "the visitor says it is broken"}
    ]
    fake_llm.reply = _stage_vote_or_answer("advocacy", "Reports are under Insights [1].")
    other = httpx.post(f"{llm_server.url}/v1/chat", json=message, timeout=30).json()
    assert with_vote["stage"]["scores"]["support"] > other["stage"]["scores"]["support"]
    assert other["stage"]["scores"]["advocacy"] > with_vote["stage"]["scores"]["advocacy"]


def test_llm_is_asked_for_a_stage_vote_only_when_the_detector_is_unsure(llm_server, fake_llm):
    fake_llm.reply = stage_vote_or("Reports are under Insights [1].", stage="support")

    def votes_asked(message: str) -> tuple[int, dict]:
        before = len(fake_llm.requests)
        done = httpx.post(f"{llm_server.url}/v1/chat", json={"message": message}, timeout=30).json()
        return sum(bool(r.get("response_format")) for r in fake_llm.requests[before:]), done

    asked, sure = votes_asked(PRICING["message"])
    assert sure["mode"] == "llm" and not sure["stage"].get("uncertain") and sure["stage"]["confidence"] >= 0.7
    assert asked == 0, "a stage the detector is sure of costs no LLM call"
    asked, unsure = votes_asked("tell me about the reports")
    assert unsure["mode"] == "llm" and asked == 1, "an unsure stage the LLM answers for is voted on"
    assert [e["stage"] for e in unsure["stage"]["evidence"] if e["type"] == "llm"] == ["support"]
    asked, small_talk = votes_asked("thanks!")
    assert asked == 0 and small_talk["stage"].get("uncertain") is not False
    asked, declined = votes_asked("What will the weather be like on Mars tomorrow?")  # no passage near it
    assert declined["mode"] == "offline" and declined["handoff"] == {"suggested": True, "reason": "no_answer"}
    assert declined["stage"]["uncertain"] and asked == 0, "a turn declined without the LLM is not voted on"


def test_failed_stage_vote_leaves_offline_detector_alone(llm_server, fake_llm):
    fake_llm.reply = "not json at all"
    data = httpx.post(f"{llm_server.url}/v1/chat", json=PRICING, timeout=30).json()
    assert data["stage"]["name"] == "decision"
    assert not [e for e in data["stage"]["evidence"] if e["type"] == "llm"]


def test_stage_guidance_says_how_to_answer(llm_server, fake_llm):
    fake_llm.reply = "Sorry about that. Check the reminder settings [1]."
    asked = {
        "support": "my clients aren't getting their text reminders, it's broken",
        "renewal": "How do I cancel my subscription?",
    }
    for stage, message in asked.items():
        done = httpx.post(f"{llm_server.url}/v1/chat", json={"message": message}, timeout=30).json()
        assert done["stage"]["name"] == stage and not done["stage"].get("uncertain"), done["stage"]
        prompt = fake_llm.requests[-1]["messages"][-1]["content"]
        guidance = _words(STAGES[stage]["guidance"])
        assert guidance and guidance in _words(prompt), f"the {stage} guidance says how to answer"
    assert "no pressure" in _words(STAGES["renewal"]["guidance"])
    assert "offer to connect the visitor with a person" in _words(STAGES["support"]["guidance"])


def test_uncertain_stage_brings_no_stage_pressure(llm_server, fake_llm):
    fake_llm.reply = "Reports are under Insights [1]."
    done = httpx.post(f"{llm_server.url}/v1/chat", json={"message": "tell me about the reports"}, timeout=30).json()
    assert done["stage"]["uncertain"] is True, "the detector is unsure of this message"
    prompt = _words(fake_llm.requests[-1]["messages"][-1]["content"])
    for name, stage in STAGES.items():
        assert _words(stage["guidance"]) not in prompt, name
        assert _words(stage["next_step"]) not in prompt, name
    assert "no sales push" in prompt


NO_ANSWER_PIECES = ["NO", "_ANS", "WER"]  # the marker as a model streams it, a few characters at a time
UNCOVERED = {"message": "can my clients pay in bitcoin?"}


def test_llm_no_answer_is_declined_like_offline(llm_server, fake_llm):
    fake_llm.reply = NO_ANSWER_PIECES
    events = stream_chat(llm_server.url, UNCOVERED)
    answers = [r for r in fake_llm.requests if not r.get("response_format")]
    assert answers, "the LLM was asked"
    system, prompt = answers[-1]["messages"][0]["content"], answers[-1]["messages"][-1]["content"]
    assert "reply with exactly NO_ANSWER" in system and "reply with exactly NO_ANSWER" in prompt
    names = [n for n, _ in events]
    assert names.count("sources") == 1 and all(d["sources"] == [] for n, d in events if n == "sources")
    tokens = "".join(d["text"] for n, d in events if n == "token")
    assert "NO" not in tokens and "_ANS" not in tokens, "the marker's first pieces were held back"
    done = events[-1][1]
    assert tokens == done["reply"] and "person" in done["reply"]
    assert done["sources"] == [] and done["handoff"] == {"suggested": True, "reason": "no_answer"}
    assert done["mode"] == "llm" and done["outcome"] == "ok"
    row = llm_server.touchpoints(id=done["message_id"])[0]
    assert row["reply"] == done["reply"] and json.loads(row["sources"]) == []


def test_llm_no_answer_declines_in_the_json_api(llm_server, fake_llm):
    fake_llm.reply = "NO_ANSWER. The documents are about something else."
    data = httpx.post(f"{llm_server.url}/v1/chat", json=UNCOVERED, timeout=30).json()
    assert data["sources"] == [] and data["handoff"] == {"suggested": True, "reason": "no_answer"}
    assert "NO_ANSWER" not in data["reply"] and "something else" not in data["reply"]


def test_reply_that_starts_like_the_marker_is_streamed_with_its_sources(llm_server, fake_llm):
    fake_llm.reply = ["No", ", one account has one plan [1]", "."]
    events = stream_chat(llm_server.url, PRICING)
    names = [n for n, _ in events]
    assert names.count("sources") == 1 and names.index("sources") < names.index("token")
    assert events[names.index("sources")][1]["sources"], "an answer cites its documents"
    done = events[-1][1]
    assert "".join(d["text"] for n, d in events if n == "token") == done["reply"] == "".join(fake_llm.reply)
    assert done["sources"] and done["handoff"]["reason"] != "no_answer"
    fake_llm.reply = ["No."]  # shorter than the marker: released when the stream ends
    done = stream_chat(llm_server.url, PRICING)[-1][1]
    assert done["reply"] == "No." and done["sources"]
