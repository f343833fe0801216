"""Checks that the fake LLM server speaks enough OpenAI for the real clients."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterator

import httpx
import openai
import pytest
from langchain_openai import ChatOpenAI

try:
    from fake_llm import DEFAULT_REPLY, EMBEDDING_DIM, FakeLLMServer
except ImportError:  # tests/ became a package: rootdir, not tests/, is on sys.path
    from tests.fake_llm import DEFAULT_REPLY, EMBEDDING_DIM, FakeLLMServer

pytestmark = pytest.mark.timeout(30)

MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeLLMServer]:
    """One fake server for the module, reset before every test."""
    with FakeLLMServer() as server:
        yield server


@pytest.fixture(autouse=True)
def _reset(fake: FakeLLMServer) -> None:
    """Give every test a fresh fake state."""
    fake.reset()


def client(fake: FakeLLMServer, **kwargs: float) -> openai.OpenAI:
    """Real openai client pointed at the fake."""
    return openai.OpenAI(base_url=fake.base_url, api_key="test", max_retries=0, **kwargs)


def test_non_stream_reply_and_request_recorded(fake: FakeLLMServer) -> None:
    """A plain completion returns the reply and the body is recorded."""
    fake.reply = "Custom reply [2]."
    result = client(fake).chat.completions.create(model="fake", messages=MESSAGES, temperature=0)
    assert result.choices[0].message.content == "Custom reply [2]."
    assert result.choices[0].finish_reason == "stop"
    assert fake.requests[-1]["messages"] == MESSAGES
    assert fake.requests[-1]["temperature"] == 0


def test_stream_chunks_join_to_reply(fake: FakeLLMServer) -> None:
    """Streamed content arrives in several chunks that join to the reply, with usage."""
    stream = client(fake).chat.completions.create(
        model="fake", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    contents = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(contents) > 2
    assert "".join(contents) == DEFAULT_REPLY
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_error_mode_raises_internal_server_error(fake: FakeLLMServer) -> None:
    """Error mode answers 500 with an OpenAI error body."""
    fake.mode = "error"
    with pytest.raises(openai.InternalServerError):
        client(fake).chat.completions.create(model="fake", messages=MESSAGES)


def test_slow_mode_times_out_client(fake: FakeLLMServer) -> None:
    """Slow mode outlasts a short client timeout."""
    fake.mode = "slow"
    with pytest.raises(openai.APITimeoutError):
        client(fake, timeout=0.5).chat.completions.create(model="fake", messages=MESSAGES)


def test_slow_request_does_not_block_others(fake: FakeLLMServer) -> None:
    """A sleeping request leaves the server free to answer others."""
    fake.mode = "slow"
    with pytest.raises(openai.APITimeoutError):
        client(fake, timeout=0.3).chat.completions.create(model="fake", messages=MESSAGES)
    started = time.monotonic()
    assert httpx.get(f"{fake.base_url}/models", timeout=2).json()["data"][0]["id"] == "fake"
    assert time.monotonic() - started < 1


def test_malformed_and_drop_stream_modes(fake: FakeLLMServer) -> None:
    """Malformed streams fail to parse; dropped streams end without a finish_reason."""
    fake.mode = "malformed"
    with pytest.raises(ValueError):
        list(client(fake).chat.completions.create(model="fake", messages=MESSAGES, stream=True))
    fake.mode = "drop"
    seen: list[str | None] = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in client(fake).chat.completions.create(model="fake", messages=MESSAGES, stream=True):
            seen += [c.finish_reason for c in chunk.choices]
    assert len(seen) == 3 and "stop" not in seen


def test_langchain_invoke_and_astream(fake: FakeLLMServer) -> None:
    """ChatOpenAI can invoke and astream against the fake."""
    llm = ChatOpenAI(base_url=fake.base_url, api_key="test", model="fake", max_retries=0)
    assert llm.invoke("hi").content == DEFAULT_REPLY

    async def collect() -> str:
        return "".join([str(chunk.content) async for chunk in llm.astream("hi")])

    assert asyncio.run(collect()) == DEFAULT_REPLY
    assert fake.requests[-1]["stream"] is True


def test_embeddings_are_deterministic_and_normalised(fake: FakeLLMServer) -> None:
    """Embeddings come back per input, stable across calls, with unit length."""
    first = client(fake).embeddings.create(model="fake", input=["alpha", "beta"]).data
    again = client(fake).embeddings.create(model="fake", input="alpha", encoding_format="float").data
    assert len(first) == 2 and len(first[0].embedding) == EMBEDDING_DIM
    assert again[0].embedding == pytest.approx(first[0].embedding, abs=1e-6)
    assert first[0].embedding != first[1].embedding
    assert math.isclose(math.fsum(v * v for v in first[1].embedding), 1.0, abs_tol=1e-5)


def test_exit_with_stalled_stream_is_fast() -> None:
    """Leaving the context manager while a stall stream is open returns quickly."""
    with FakeLLMServer() as server:
        server.mode = "stall"
        server.delay = 60
        stream = client(server, timeout=30).chat.completions.create(model="fake", messages=MESSAGES, stream=True)
        iterator = iter(stream)
        received = [next(iterator) for _ in range(3)]
        assert received[0].choices[0].delta.role == "assistant"
        started = time.monotonic()
    elapsed = time.monotonic() - started
    stream.close()
    assert elapsed < 5
