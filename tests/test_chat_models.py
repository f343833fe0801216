"""JOURNEY_LLM: any LangChain chat model through init_chat_model, against real `journey serve` processes.

One server loads LangChain's FakeListChatModel (tests/fake_chat_models.py, steered through a script file); another
takes the `openai:` provider, langchain-openai's ChatOpenAI, to the fake OpenAI-compatible server over HTTP.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from conftest import REPO, Server, base_env, run_cli
from fake_llm import FakeLLMServer, stage_vote_or
from sse import iter_events, stream_chat

from app.answer.chat_model import LLMConfigError, load_chat_model
from app.config import Settings

PRICING = {"message": "How much does the pro plan cost?"}
UNSURE = "tell me about the reports"  # the offline detector is unsure of its stage (tests/test_llm.py)
ANSWER = "The Pro plan costs $29 per staff calendar per month [1]."
TIMEOUTS = {
    "JOURNEY_LLM_TIMEOUT": "4",
    "JOURNEY_LLM_TOKEN_TIMEOUT": "1",
    "JOURNEY_LLM_STAGE_TIMEOUT": "2",
    "JOURNEY_RATE_LIMIT_IP": "1000000/60",
}


class Script:
    """What the scripted fake chat model in the server says next, and what it was asked."""

    def __init__(self, folder: Path) -> None:
        self.path, self.log = folder / "script.json", folder / "calls.jsonl"
        self.set(reply=ANSWER)

    def set(self, **script) -> None:
        """Replace the script (reply, sleep per character, votes: message -> stage); forget earlier calls."""
        self.path.write_text(json.dumps(script), encoding="utf-8")
        self.log.write_text("", encoding="utf-8")

    def calls(self) -> list[dict]:
        """The calls since the last set(): {"vote": bool, "messages": [[type, content], ...]}."""
        return [json.loads(line) for line in self.log.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def scripted(make_data_dir: Callable[[], Path], tmp_path_factory) -> Iterator[tuple[Server, Script]]:
    """A server whose JOURNEY_LLM is the scripted LangChain fake chat model."""
    script = Script(tmp_path_factory.mktemp("fake-chat"))
    server = Server(
        make_data_dir(),
        JOURNEY_LLM="python:fake_chat_models:scripted",
        PYTHONPATH=str(REPO / "tests"),
        FAKE_CHAT_SCRIPT=str(script.path),
        FAKE_CHAT_LOG=str(script.log),
        **TIMEOUTS,
    )
    yield server, script
    server.stop()


def test_plain_reply_comes_from_the_chat_model(scripted):
    server, script = scripted
    script.set(reply=ANSWER)
    data = httpx.post(f"{server.url}/v1/chat", json=PRICING, timeout=30).json()
    assert data["reply"] == ANSWER
    assert data["mode"] == "llm" and data["model"] == "python:fake_chat_models:scripted" and data["outcome"] == "ok"
    assert data["sources"] and data["sources"][0]["id"].startswith("pricing/")
    [call] = script.calls()
    assert not call["vote"], "a stage the detector is sure of costs no vote"
    kinds = [kind for kind, _ in call["messages"]]
    assert kinds[0] == "system" and kinds[-1] == "human"
    assert "<visitor_message>\nHow much does the pro plan cost?\n</visitor_message>" in call["messages"][-1][1]
    row = server.touchpoints(id=data["message_id"])[0]
    assert row["mode"] == "llm" and row["model"] == "python:fake_chat_models:scripted"
    health = httpx.get(f"{server.url}/health", timeout=10).json()
    assert health["mode"] == "llm" and health["llm_model"] == "python:fake_chat_models:scripted"


def test_tokens_arrive_while_the_model_is_still_writing(scripted):
    server, script = scripted
    script.set(reply=ANSWER, sleep=0.03)  # 56 characters: about 1.7 s from the first to the last
    arrivals: list[tuple[float, str]] = []
    with httpx.stream("POST", f"{server.url}/v1/chat/stream", json=PRICING, timeout=30) as response:
        for name, data in iter_events(response):
            arrivals.append((time.monotonic(), name))
            if name == "done":
                done = data
    tokens = [t for t, name in arrivals if name == "token"]
    assert len(tokens) >= 10, "the reply comes in many token events, not one"
    assert arrivals[-1][0] - tokens[0] > 1.0, "the first token reached the client long before the answer was done"
    assert done["reply"] == ANSWER and done["outcome"] == "ok"


def test_stalled_model_times_out_to_the_offline_answer(scripted):
    server, script = scripted
    script.set(reply=ANSWER, sleep=3)  # past JOURNEY_LLM_TOKEN_TIMEOUT=1 before the first character
    started = time.monotonic()
    events = stream_chat(server.url, PRICING)
    done = events[-1][1]
    assert [n for n, _ in events][-1] == "done"
    assert done["outcome"] == "llm_timeout" and done["mode"] == "offline"
    assert "$29" in done["reply"] and done["sources"], "the grounded offline answer"
    assert "".join(d["text"] for n, d in events if n == "token") == done["reply"]
    assert time.monotonic() - started < 5
    row = server.touchpoints(id=done["message_id"])[0]
    assert row["outcome"] == "llm_timeout" and "stopped sending tokens" in row["error"]


def test_stage_vote_only_when_the_detector_is_unsure(scripted):
    server, script = scripted
    script.set(reply="Reports are under Insights [1].", votes={UNSURE: "support"})
    sure = httpx.post(f"{server.url}/v1/chat", json=PRICING, timeout=30).json()
    assert sure["mode"] == "llm" and not sure["stage"].get("uncertain")
    assert [c["vote"] for c in script.calls()] == [False], "a sure stage: the answer only"
    script.set(reply="Reports are under Insights [1].", votes={UNSURE: "support"})
    unsure = httpx.post(f"{server.url}/v1/chat", json={"message": UNSURE}, timeout=30).json()
    assert [c["vote"] for c in script.calls()] == [True, False], "an unsure stage: a vote, then the answer"
    assert [e for e in unsure["stage"]["evidence"] if e["type"] == "llm"] == [
        {"type": "llm", "stage": "support", "confidence": 0.9, "detail": "from the script"}
    ]
    script.set(reply="Reports are under Insights [1].", votes={})  # not a JSON vote: no vote, the detector alone
    alone = httpx.post(f"{server.url}/v1/chat", json={"message": UNSURE}, timeout=30).json()
    assert alone["mode"] == "llm" and not [e for e in alone["stage"]["evidence"] if e["type"] == "llm"]
    script.set(reply="You're welcome!")
    thanks = httpx.post(f"{server.url}/v1/chat", json={"message": "thanks!"}, timeout=30).json()
    assert not [c for c in script.calls() if c["vote"]] and thanks["stage"], "small talk is never voted on"


def test_decline_is_reported(scripted):
    server, script = scripted
    script.set(reply="NO_ANSWER", sleep=0.01)
    events = stream_chat(server.url, {"message": "can my clients pay in bitcoin?"})
    assert script.calls(), "the chat model was asked"
    tokens = "".join(d["text"] for n, d in events if n == "token")
    assert "NO_ANS" not in tokens, "the marker is held back"
    done = events[-1][1]
    assert done["handoff"] == {"suggested": True, "reason": "no_answer"} and done["sources"] == []
    assert done["mode"] == "llm" and tokens == done["reply"] and "person" in done["reply"]


def _serve_error(tmp_path: Path, **env: str) -> str:
    """Run `journey serve` with env; it must stop at once with exit 1 and one error line, which is returned."""
    result = run_cli("serve", "--port", "9", env=base_env(tmp_path, **env))
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    [line] = [x for x in result.stderr.splitlines() if x.startswith("error:")]
    return line


def test_missing_provider_package_names_the_pip_package(tmp_path):
    line = _serve_error(tmp_path, JOURNEY_LLM="anthropic:claude-sonnet-4-5", ANTHROPIC_API_KEY="sk-test")
    assert line.startswith("error: JOURNEY_LLM=anthropic:claude-sonnet-4-5:")
    assert "pip install langchain-anthropic" in line


def test_bad_journey_llm_format_is_said_at_startup(tmp_path):
    line = _serve_error(tmp_path, JOURNEY_LLM="claude-sonnet-4-5")
    assert "JOURNEY_LLM must be provider:model" in line and "'claude-sonnet-4-5'" in line


@pytest.mark.parametrize(
    ("spec", "said"),
    [
        ("nosuchprovider:model-1", "Unable to infer model provider"),
        ("python:no_such_module:factory", "cannot import 'factory' from 'no_such_module'"),
        ("python:json:dumps", "TypeError"),  # the factory raised
        ("python:collections:OrderedDict", "did not give a LangChain chat model (got OrderedDict)"),
    ],
)
def test_unusable_journey_llm_is_a_config_error(spec, said):
    with pytest.raises(LLMConfigError, match=re.escape(said)):
        load_chat_model(Settings(llm=spec))


def test_without_langchain_installed_the_error_says_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "langchain.chat_models", None)  # `import langchain.chat_models` fails
    with pytest.raises(LLMConfigError, match="needs LangChain's init_chat_model: pip install langchain"):
        load_chat_model(Settings(llm="openai:gpt-4o-mini"))


@pytest.fixture(scope="module")
def via_langchain_openai(make_data_dir: Callable[[], Path], fake_llm_session: FakeLLMServer) -> Iterator[Server]:
    """A server whose JOURNEY_LLM is langchain-openai's ChatOpenAI, pointed at the fake OpenAI-compatible server."""
    options = json.dumps({"base_url": fake_llm_session.base_url, "api_key": "test-key"})
    server = Server(
        make_data_dir(),
        JOURNEY_LLM="openai:fake-model",
        JOURNEY_LLM_OPTIONS=options,
        JOURNEY_LLM_MAX_RETRIES="0",  # passed on as ChatOpenAI's max_retries (its default is 2)
        **TIMEOUTS,
    )
    yield server
    server.stop()


def test_openai_provider_over_http(via_langchain_openai, fake_llm):
    fake_llm.reply = ANSWER
    events = stream_chat(via_langchain_openai.url, PRICING)
    done = events[-1][1]
    assert done["reply"] == ANSWER and done["mode"] == "llm" and done["model"] == "openai:fake-model"
    assert sum(n == "token" for n, _ in events) > 3, "the fake streams word by word and so do the token events"
    request = fake_llm.requests[-1]
    assert request["stream"] is True and request["model"] == "fake-model" and request["temperature"] == 0.2
    assert (request.get("max_tokens") or request.get("max_completion_tokens")) == 600
    assert request["messages"][0]["role"] == "system" and "<documents>" in request["messages"][-1]["content"]


def test_openai_provider_votes_with_structured_output(via_langchain_openai, fake_llm):
    fake_llm.reply = stage_vote_or("Reports are under Insights [1].", stage="support")
    data = httpx.post(f"{via_langchain_openai.url}/v1/chat", json={"message": UNSURE}, timeout=30).json()
    votes = [r for r in fake_llm.requests if r.get("response_format") or r.get("tools")]
    assert len(votes) == 1 and "support" in json.dumps(votes[0]), "one structured request listing the stages"
    assert [e["stage"] for e in data["stage"]["evidence"] if e["type"] == "llm"] == ["support"]
    assert data["reply"] == "Reports are under Insights [1]."


def test_openai_provider_error_falls_back_offline(via_langchain_openai, fake_llm):
    fake_llm.mode = "error"
    data = httpx.post(f"{via_langchain_openai.url}/v1/chat", json=PRICING, timeout=30).json()
    assert data["mode"] == "offline" and data["outcome"] == "llm_error" and "$29" in data["reply"]
    assert len(fake_llm.requests) == 1, "JOURNEY_LLM_MAX_RETRIES=0: no retry"
    row = via_langchain_openai.touchpoints(id=data["message_id"])[0]
    assert row["outcome"] == "llm_error" and "500" in row["error"]


def test_eval_stages_asks_the_chat_model_only_on_unsure_turns(tmp_path, make_data_dir):
    cases = [
        {"messages": [{"role": "user", "content": PRICING["message"]}], "stage": "decision"},
        {"messages": [{"role": "user", "content": UNSURE}], "stage": "support"},
        {"messages": [{"role": "user", "content": "thanks!"}], "stage": "awareness"},
    ]
    path = tmp_path / "cases.jsonl"
    path.write_text("\n".join(json.dumps(c) for c in cases) + "\n")
    script = Script(tmp_path)
    script.set(reply="not a vote", votes={UNSURE: "support"})
    chat_model = {
        "JOURNEY_LLM": "python:fake_chat_models:scripted",
        "PYTHONPATH": str(REPO / "tests"),
        "FAKE_CHAT_SCRIPT": str(script.path),
        "FAKE_CHAT_LOG": str(script.log),
    }
    voted = run_cli("eval-stages", str(path), "--llm", env=base_env(make_data_dir(), **chat_model))
    assert voted.returncode == 0, voted.stderr
    assert "LLM stage votes asked: 1 of 3 turns (0.333)" in voted.stdout
    [call] = script.calls()
    assert call["vote"] and UNSURE in call["messages"][-1][1]
