"""LLMAnswerer and LLMStageClassifier against the fake OpenAI-compatible server: the upstream HTTP stream is
closed whenever the answer stops early, and a stage vote outside the schema counts as no vote."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import pytest
from fake_llm import FakeLLMServer

from app.answer.llm import LLMAnswerer, LLMFailure
from app.config import Settings
from app.stages.config import load_journey
from app.stages.detector import StageSignals
from app.stages.llm import LLMStageClassifier

pytestmark = pytest.mark.timeout(60)

WORDS = "one two three four five six seven eight"
MESSAGES = LLMAnswerer.messages("You are a test.", [], "Count to eight.")


@pytest.fixture(scope="module")
def own_fake() -> Iterator[FakeLLMServer]:
    """A fake of this module's own: responses other tests left running on the shared one would add timings."""
    with FakeLLMServer() as server:
        yield server


@pytest.fixture()
def fake_llm(own_fake: FakeLLMServer) -> FakeLLMServer:
    """This module's fake, reset for each test."""
    own_fake.reset()
    return own_fake


@pytest.fixture()
def settings(fake_llm: FakeLLMServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """Settings pointed at the fake LLM with short timeouts."""
    monkeypatch.setenv("OPENAI_BASE_URL", fake_llm.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    yield Settings(llm_model="fake-model", llm_timeout=5, llm_token_timeout=0.5, llm_max_retries=0)


def finished_streams(fake: FakeLLMServer, wait: float) -> int:
    """How many chat completions the fake sent to the end, after giving open ones `wait` seconds to finish.

    The fake records a timing only when its response body ran to completion; a client that closes the
    connection makes the server cancel the response, so nothing is recorded for it."""
    time.sleep(wait)
    return len(fake.timings)


def test_stream_joins_the_reply(settings: Settings, fake_llm: FakeLLMServer) -> None:
    fake_llm.reply = WORDS

    async def go() -> str:
        return "".join([piece async for piece in LLMAnswerer(settings).stream(MESSAGES)])

    assert asyncio.run(go()) == WORDS
    assert fake_llm.requests[-1]["messages"] == MESSAGES
    assert finished_streams(fake_llm, 0.2) == 1


def test_consumer_stopping_early_closes_the_upstream_stream(settings: Settings, fake_llm: FakeLLMServer) -> None:
    fake_llm.mode, fake_llm.delay, fake_llm.reply = "trickle", 0.1, WORDS  # about 0.7 s for the whole reply
    answerer = LLMAnswerer(settings)

    async def first_piece(close: bool) -> str:
        pieces = answerer.stream(MESSAGES)
        first = await pieces.__anext__()
        if close:
            await pieces.aclose()
        else:
            await asyncio.sleep(1.5)  # held open, not read: the fake still sends the rest into the socket buffer
            await pieces.aclose()
        return first

    assert asyncio.run(first_piece(close=False)) == "one "
    assert finished_streams(fake_llm, 0.2) == 1, "control: a stream left open runs to the end"
    assert asyncio.run(first_piece(close=True)) == "one "
    assert finished_streams(fake_llm, 1.5) == 1, "the closed stream was cut, not sent to the end"
    assert len(fake_llm.requests) == 2


def test_cancelled_consumer_closes_the_upstream_stream(settings: Settings, fake_llm: FakeLLMServer) -> None:
    fake_llm.mode, fake_llm.delay, fake_llm.reply = "trickle", 0.1, WORDS
    answerer = LLMAnswerer(settings)

    async def go() -> list[str]:
        got: list[str] = []

        async def consume() -> None:
            async for piece in answerer.stream(MESSAGES):
                got.append(piece)

        task = asyncio.create_task(consume())
        while not got:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return got

    assert asyncio.run(go())[0] == "one "
    assert finished_streams(fake_llm, 1.5) == 0


def test_stall_is_a_timeout_and_closes_the_upstream_stream(settings: Settings, fake_llm: FakeLLMServer) -> None:
    fake_llm.mode, fake_llm.delay, fake_llm.reply = "stall", 1.5, WORDS  # two words, then 1.5 s of silence
    answerer = LLMAnswerer(settings)
    got: list[str] = []

    async def go() -> tuple[LLMFailure, float, int]:
        started = time.monotonic()
        try:
            async for piece in answerer.stream(MESSAGES):
                got.append(piece)
        except LLMFailure as failure:  # kept, with its traceback, while the loop runs on (as the chat service does)
            waited = time.monotonic() - started
            await asyncio.sleep(2.0)  # the stall is over: an open stream would now run to its end
            return failure, waited, len(fake_llm.timings)
        raise AssertionError("the stall did not fail the stream")

    failure, waited, finished = asyncio.run(go())
    assert failure.outcome == "llm_timeout" and "stopped sending tokens" in failure.detail
    assert got == ["one ", "two "] and waited < 1.4
    assert finished == 0, "the stalled stream was closed when the answer failed"


def test_malformed_stream_is_an_llm_error(settings: Settings, fake_llm: FakeLLMServer) -> None:
    fake_llm.mode = "malformed"

    async def go() -> list[str]:
        return [piece async for piece in LLMAnswerer(settings).stream(MESSAGES)]

    with pytest.raises(LLMFailure) as failure:
        asyncio.run(go())
    assert failure.value.outcome == "llm_error" and "JSONDecodeError" in failure.value.detail


@pytest.mark.parametrize(
    ("vote", "expected"),
    [
        ({"stage": "support", "confidence": 0.7, "reason": "it is broken"}, ("support", 0.7)),
        ({"stage": "shopping", "confidence": 0.7, "reason": "not a configured stage"}, None),
        ({"stage": "support", "confidence": 1.5, "reason": "confidence above 1"}, None),
        ({"stage": "support", "confidence": 0.7}, None),
    ],
)
def test_stage_vote_must_match_the_schema(settings: Settings, fake_llm: FakeLLMServer, vote, expected) -> None:
    fake_llm.reply = json.dumps(vote)
    classifier = LLMStageClassifier(settings, load_journey(settings.knowledge_dir / "stages.yaml"))
    result = asyncio.run(classifier.classify(StageSignals(message="the calendar sync is broken")))
    if expected is None:
        assert result is None
    else:
        assert result is not None and (result.stage, result.confidence) == expected
    request = fake_llm.requests[-1]
    assert request["response_format"]["json_schema"]["strict"] is True
    assert request["temperature"] == 0 and "the calendar sync is broken" in request["messages"][0]["content"]
