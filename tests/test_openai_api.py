"""The OpenAI-compatible API through the official `openai` client, against real servers."""

from __future__ import annotations

import httpx
import openai
import pytest
from conftest import Server

PRICING = "How much does the pro plan cost?"


def client(server, **kwargs) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="not-needed", max_retries=0, timeout=60, **kwargs)


def ask(messages: list[dict] | str) -> list[dict]:
    return [{"role": "user", "content": messages}] if isinstance(messages, str) else messages


def test_plain_completion_carries_reply_and_journey(offline_server):
    response = client(offline_server).chat.completions.create(
        model="journey-guide", messages=ask(PRICING), user="openai-visitor-0001"
    )
    reply = response.choices[0].message.content
    assert response.object == "chat.completion" and response.model == "journey-guide"
    assert response.choices[0].finish_reason == "stop" and response.choices[0].message.role == "assistant"
    assert "$29" in reply and "[1]" in reply
    journey = response.model_extra["journey"]
    assert journey["visitor_id"] == "openai-visitor-0001"
    assert journey["stage"]["name"] == "decision" and 0 < journey["stage"]["confidence"] <= 1
    assert journey["sources"][0]["id"].startswith("pricing/")
    assert journey["suggestions"] and journey["handoff"] == {"suggested": False, "reason": None}
    assert journey["outcome"] == "ok" and "reply" not in journey
    assert response.id == f"chatcmpl-{journey['message_id']}"
    assert response.usage.completion_tokens > 0
    row = offline_server.touchpoints(id=journey["message_id"])[0]
    assert row["question"] == PRICING and row["reply"] == reply and row["kind"] == "exchange"
    assert row["visitor_id"] == "openai-visitor-0001" and row["stage"] == "decision" and row["outcome"] == "ok"


def test_streamed_completion_arrives_in_pieces_and_ends_with_journey(offline_server):
    stream = client(offline_server).chat.completions.create(
        model="anything", messages=ask(PRICING), stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    first, last_choice = chunks[0], [c for c in chunks if c.choices][-1]
    assert first.choices[0].delta.role == "assistant"
    assert first.model_extra["journey"]["stage"]["name"] == "decision", "the stage comes first"
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(pieces) >= 5
    assert last_choice.choices[0].finish_reason == "stop"
    journey = last_choice.model_extra["journey"]
    assert journey["sources"] and journey["stage"]["name"] == "decision" and journey["outcome"] == "ok"
    assert chunks[-1].usage is not None and chunks[-1].choices == []
    assert len({c.id for c in chunks}) == 1 and chunks[0].model == "anything"
    row = offline_server.touchpoints(id=journey["message_id"])[0]
    assert row["reply"] == "".join(pieces) and row["outcome"] == "ok"


def test_stream_ends_with_done_marker_on_the_wire(offline_server):
    body = {"model": "journey-guide", "messages": ask("What is Lumio?"), "stream": True}
    with httpx.stream("POST", f"{offline_server.url}/v1/chat/completions", json=body, timeout=60) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line.startswith("data:")]
    assert lines[-1] == "data: [DONE]"
    assert all(not line.startswith("event:") for line in lines)


def test_conversation_continues_through_metadata(offline_server):
    openai_client = client(offline_server)
    first = openai_client.chat.completions.create(model="m", messages=ask(PRICING), user="openai-visitor-0002")
    cid = first.model_extra["journey"]["conversation_id"]
    second = openai_client.chat.completions.create(
        model="m", messages=ask("ok thanks"), user="openai-visitor-0002", metadata={"conversation_id": cid}
    )
    journey = second.model_extra["journey"]
    assert journey["conversation_id"] == cid
    assert journey["stage"]["previous"] == "decision" and journey["stage"]["name"] == "decision"
    assert [r["turn"] for r in offline_server.touchpoints(conversation_id=cid)] == [1, 2]


KEY = "test-api-key-0001"
SECRET = "identity-secret-0123456789"


@pytest.fixture(scope="module")
def keyed_server(make_data_dir):
    """A server whose OpenAI-compatible endpoint needs an API key (a trusted server calls it)."""
    server = Server(make_data_dir(), JOURNEY_API_KEYS=KEY)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def signing_server(make_data_dir):
    """No API keys; host-signed identities are checked with JOURNEY_IDENTITY_SECRET."""
    server = Server(make_data_dir(), JOURNEY_IDENTITY_SECRET=SECRET)
    yield server
    server.stop()


def history(first_reply: str, question: str = "Is there a yearly discount?") -> list[dict]:
    return [
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": PRICING},
        {"role": "assistant", "content": first_reply},
        {"role": "user", "content": [{"type": "text", "text": question}]},
    ]


def test_a_keyed_caller_continues_the_users_conversation_when_it_sends_history(keyed_server):
    openai_client = openai.OpenAI(base_url=f"{keyed_server.url}/v1", api_key=KEY, max_retries=0, timeout=60)
    first = openai_client.chat.completions.create(model="m", messages=ask(PRICING), user="openai-visitor-0003")
    second = openai_client.chat.completions.create(
        model="m", messages=history(first.choices[0].message.content), user="openai-visitor-0003"
    )
    assert second.model_extra["journey"]["conversation_id"] == first.model_extra["journey"]["conversation_id"]
    fresh = openai_client.chat.completions.create(model="m", messages=ask(PRICING), user="openai-visitor-0003")
    assert fresh.model_extra["journey"]["conversation_id"] != first.model_extra["journey"]["conversation_id"]


def test_a_user_id_alone_cannot_resume_or_read_a_visitors_conversation(offline_server):
    openai_client = client(offline_server)
    secret = "my card is 4111 1111 1111 1111 and I'm ann@example.com, how much is pro?"
    victim = openai_client.chat.completions.create(model="m", messages=ask(secret), user="crm-contact-4711")
    victim_cid = victim.model_extra["journey"]["conversation_id"]
    for stream in (False, True):
        response = httpx.post(
            f"{offline_server.url}/v1/chat/completions",
            json={"model": "m", "messages": history("…", "what did I tell you?"), "user": "crm-contact-4711",
                  "stream": stream},
            timeout=60,
        )
        assert response.status_code == 200, response.text
        assert victim_cid not in response.text, "naming the user does not reveal their conversation"
    transcript = httpx.get(
        f"{offline_server.url}/v1/conversations/{victim_cid}", params={"visitor_id": "crm-contact-4711"}, timeout=30
    )
    assert transcript.status_code == 200, "the conversation id and the visitor id together still read it"
    assert len(offline_server.touchpoints(conversation_id=victim_cid)) == 1, "nothing was added to it"


def test_a_keyed_caller_never_continues_a_conversation_someone_else_started_under_its_user(keyed_server):
    openai_client = openai.OpenAI(base_url=f"{keyed_server.url}/v1", api_key=KEY, max_retries=0, timeout=60)
    first = openai_client.chat.completions.create(model="m", messages=ask(PRICING), user="crm-contact-4712")
    planted = httpx.post(
        f"{keyed_server.url}/v1/chat", json={"message": "hello", "visitor_id": "crm-contact-4712"}, timeout=60
    ).json()  # the visitor API is open: anyone can name any visitor id there
    second = openai_client.chat.completions.create(
        model="m", messages=history(first.choices[0].message.content), user="crm-contact-4712"
    )
    assert second.model_extra["journey"]["conversation_id"] == first.model_extra["journey"]["conversation_id"]
    assert second.model_extra["journey"]["conversation_id"] != planted["conversation_id"]


def test_a_signed_identity_lets_a_caller_without_a_key_continue_its_users_conversation(signing_server):
    import time

    from app.security.identity import sign

    expires = int(time.time()) + 600
    signature = sign({"id": "crm-contact-4713", "known_customer": True, "expires": expires}, SECRET)
    signed = {"identity_signature": signature, "identity_expires": str(expires), "known_customer": "true"}
    openai_client = client(signing_server)
    first = openai_client.chat.completions.create(
        model="m", messages=ask(PRICING), user="crm-contact-4713", metadata=signed
    )
    cid = first.model_extra["journey"]["conversation_id"]
    follow = history(first.choices[0].message.content)
    unsigned = openai_client.chat.completions.create(model="m", messages=follow, user="crm-contact-4713")
    assert unsigned.model_extra["journey"]["conversation_id"] != cid, "no proof: a new conversation"
    again = openai_client.chat.completions.create(model="m", messages=follow, user="crm-contact-4713", metadata=signed)
    assert again.model_extra["journey"]["conversation_id"] == cid
    with pytest.raises(openai.AuthenticationError):
        openai_client.chat.completions.create(model="m", messages=follow, user="crm-contact-4714", metadata=signed)


def test_models_are_listed(offline_server):
    models = client(offline_server).models.list()
    assert [m.id for m in models.data] == ["journey-guide"]
    assert client(offline_server).models.retrieve("journey-guide").owned_by == "journey-guide"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "m", "messages": []}, "messages"),
        ({"model": "m", "messages": [{"role": "assistant", "content": "hello"}]}, "messages"),
        ({"model": "m", "messages": [{"role": "user", "content": "   "}]}, "messages"),
        ({"model": "m", "messages": [{"role": "user", "content": "hi"}], "user": "bad id!"}, "user"),
        ({"model": "m", "messages": [{"role": "user", "content": "x" * 4001}]}, "messages"),
    ],
)
def test_bad_requests_get_openai_shaped_400(offline_server, body, param):
    response = httpx.post(f"{offline_server.url}/v1/chat/completions", json=body, timeout=30)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"] and error["param"].startswith(param)


def test_someone_elses_conversation_is_404_for_the_openai_client(offline_server):
    openai_client = client(offline_server)
    first = openai_client.chat.completions.create(model="m", messages=ask(PRICING), user="openai-visitor-0004")
    cid = first.model_extra["journey"]["conversation_id"]
    with pytest.raises(openai.NotFoundError) as caught:
        openai_client.chat.completions.create(
            model="m", messages=ask("hi"), user="someone-else-0004", metadata={"conversation_id": cid}
        )
    assert caught.value.body["code"] == "conversation_not_found"
    assert len(offline_server.touchpoints(conversation_id=cid)) == 1


def test_llm_tokens_stream_through_to_the_openai_client(llm_server, fake_llm):
    fake_llm.reply = "The Pro plan costs $29 per staff calendar per month [1]."
    stream = client(llm_server).chat.completions.create(model="m", messages=ask(PRICING), stream=True)
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == fake_llm.reply
    journey = chunks[-1].model_extra["journey"]
    assert journey["mode"] == "llm" and journey["model"] == "fake-model" and journey["outcome"] == "ok"


def test_llm_failing_mid_stream_is_followed_by_the_grounded_answer(llm_server, fake_llm):
    fake_llm.reply = "The Pro plan costs twenty-nine dollars per staff calendar [1]."
    fake_llm.mode = "drop"
    stream = client(llm_server).chat.completions.create(model="m", messages=ask(PRICING), stream=True)
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    journey = chunks[-1].model_extra["journey"]
    assert journey["outcome"] in ("llm_error", "llm_timeout") and journey["mode"] == "offline"
    assert journey["reply_replaced"] is True and "$29" in journey["reply"]
    assert text.endswith(journey["reply"]), "the offline answer follows the partial one"


def test_api_keys_guard_the_endpoint_and_make_the_caller_trusted(tmp_path):
    from starlette.requests import Request

    from app.config import Settings
    from app.openai_compat.router import OpenAIError, _authorize
    from app.openai_compat.schemas import CompletionRequest

    def request(auth: str | None) -> Request:
        headers = [(b"authorization", auth.encode())] if auth else []
        return Request({"type": "http", "method": "POST", "headers": headers})

    open_settings = Settings(data_dir=tmp_path)
    locked = Settings(data_dir=tmp_path, api_keys="key-one, key-two")
    assert _authorize(request(None), open_settings) is False
    assert _authorize(request("Bearer key-two"), locked) is True
    for bad in (None, "Bearer nope", "key-one"):
        with pytest.raises(OpenAIError) as caught:
            _authorize(request(bad), locked)
        assert caught.value.status == 401
    body = CompletionRequest.model_validate(
        {"messages": ask("hi"), "metadata": {"known_customer": "true", "email": "ann@example.com"}}
    )
    assert body.chat_request(None, trusted=False).identity is None, "an anonymous caller cannot claim an identity"
    identity = body.chat_request(None, trusted=True).identity
    assert identity.known_customer is True and identity.email == "ann@example.com"


@pytest.fixture(scope="module")
def strict_server(make_data_dir):
    """A server with a small per-visitor rate limit and short conversations."""
    server = Server(
        make_data_dir(), JOURNEY_RATE_LIMIT_VISITOR="3/60", JOURNEY_RATE_LIMIT_IP="1000/60", JOURNEY_MAX_TURNS="2"
    )
    yield server
    server.stop()


def test_anonymous_callers_get_the_visitor_limits_in_openai_shape(strict_server):
    openai_client = client(strict_server)
    first = openai_client.chat.completions.create(model="m", messages=ask(PRICING), user="limited-visitor-1")
    meta = {"conversation_id": first.model_extra["journey"]["conversation_id"]}
    openai_client.chat.completions.create(model="m", messages=ask("ok thanks"), user="limited-visitor-1", metadata=meta)
    with pytest.raises(openai.ConflictError) as full:
        openai_client.chat.completions.create(model="m", messages=ask("more?"), user="limited-visitor-1", metadata=meta)
    assert full.value.body["code"] == "conversation_full"
    with pytest.raises(openai.RateLimitError) as limited:
        openai_client.chat.completions.create(model="m", messages=ask("What is Lumio?"), user="limited-visitor-1")
    assert limited.value.body["type"] == "rate_limit_error" and limited.value.body["code"] == "rate_limit_exceeded"
    assert int(limited.value.response.headers["retry-after"]) >= 1
    other = openai_client.chat.completions.create(model="m", messages=ask("What is Lumio?"), user="limited-visitor-2")
    assert other.choices[0].message.content, "the limit is per visitor"
