"""Zero lost touchpoints: concurrent streams, visitors leaving mid-stream, LLM faults, kill -9 and SIGTERM.

Quick versions of bench/load_streams.py, bench/disconnects.py and bench/crash.py, against real `journey serve`
processes and the fake OpenAI-compatible LLM. Every message carries a unique marker so the rows of one test are
found in the touchpoints table whatever ran before.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from conftest import Server, free_port
from fake_llm import FakeLLMServer

UNLIMITED = {"JOURNEY_RATE_LIMIT_IP": "1000000/60", "JOURNEY_RATE_LIMIT_VISITOR": "1000000/60"}
QUESTION = "How much does the pro plan cost?"
CONFIRMED = 24  # exchanges confirmed before the kill -9


def llm_env(fake: FakeLLMServer, **extra: str) -> dict[str, str]:
    """A server pointed at the fake LLM, with short timeouts and no rate limits (all load comes from one IP)."""
    env = {
        "OPENAI_BASE_URL": fake.base_url,
        "OPENAI_API_KEY": "test-key",
        "JOURNEY_LLM_MODEL": "fake-model",
        # short, but not so short that 50 turns at once on a loaded 2-core runner look like a stalled LLM
        "JOURNEY_LLM_TIMEOUT": "15",
        "JOURNEY_LLM_TOKEN_TIMEOUT": "5",  # the slow fault (6 s) still trips it
        "JOURNEY_LLM_MAX_RETRIES": "0",
        "JOURNEY_LLM_STAGE": "false",
        **UNLIMITED,
    }
    env.update(extra)
    return env


def rows(data_dir: Path, marker: str) -> list[dict]:
    """Touchpoints whose question carries the marker."""
    con = sqlite3.connect(data_dir / "journey.db")
    con.row_factory = sqlite3.Row
    found = [dict(r) for r in con.execute("SELECT * FROM touchpoints WHERE question LIKE ?", (f"%{marker}%",))]
    con.close()
    return found


def wait_rows(data_dir: Path, marker: str, count: int, seconds: float = 20) -> list[dict]:
    """Poll the touchpoints table until `count` rows carry the marker (or time runs out)."""
    deadline = time.monotonic() + seconds
    found = rows(data_dir, marker)
    while len(found) < count and time.monotonic() < deadline:
        time.sleep(0.2)
        found = rows(data_dir, marker)
    return found


async def stream(http: httpx.AsyncClient, url: str, message: str, *, leave_after_token: bool = False) -> dict:
    """One streamed turn: the status, the event names, the done object; optionally leave after the first token."""
    result: dict = {"status": None, "events": [], "done": None, "error": None}
    try:
        async with http.stream("POST", f"{url}/v1/chat/stream", json={"message": message}) as response:
            result["status"] = response.status_code
            name = None
            async for line in response.aiter_lines():
                if line.startswith("event:"):
                    name = line[6:].strip()
                elif line.startswith("data:") and name:
                    result["events"].append(name)
                    if name == "done":
                        result["done"] = json.loads(line[5:])
                    if name == "token" and leave_after_token:
                        return result  # leaving the block closes the connection mid-stream
    except httpx.HTTPError as exc:
        result["error"] = type(exc).__name__
    return result


def many(url: str, messages: list[str], **kwargs) -> list[dict]:
    """Run streamed turns concurrently."""

    async def go() -> list[dict]:
        limits = httpx.Limits(max_connections=len(messages) + 10)
        async with httpx.AsyncClient(limits=limits, timeout=60) as http:
            return await asyncio.gather(*(stream(http, url, m, **kwargs) for m in messages))

    return asyncio.run(go())


@pytest.fixture()
def llm_data(make_data_dir: Callable[[], Path]) -> Path:
    """A fresh data dir with the knowledge base."""
    return make_data_dir()


@pytest.fixture(scope="module")
def loaded_server(make_data_dir: Callable[[], Path], fake_llm_session: FakeLLMServer) -> Iterator[Server]:
    """One server for the concurrency, disconnect and fault tests."""
    server = Server(make_data_dir(), **llm_env(fake_llm_session))
    yield server
    server.stop()


def test_concurrent_streams_leave_exactly_one_touchpoint_each(loaded_server, fake_llm):
    """20 streams at once (bench/load_streams.py runs 500)."""
    fake_llm.mode, fake_llm.delay = "trickle", 0.05  # every stream is still open while the others start
    marker = uuid.uuid4().hex[:10]
    messages = [f"{QUESTION} ({marker} #{i})" for i in range(20)]
    results = many(loaded_server.url, messages)
    assert [r["status"] for r in results] == [200] * 20
    done = [r["done"] for r in results]
    assert all(d is not None and d["outcome"] == "ok" and d["mode"] == "llm" for d in done), results
    stored = rows(loaded_server.data_dir, marker)
    assert sorted(r["question"] for r in stored) == sorted(messages), "exactly one touchpoint per turn"
    assert {r["id"] for r in stored} == {d["message_id"] for d in done}
    assert {r["id"]: r["reply"] for r in stored} == {d["message_id"]: d["reply"] for d in done}


def test_visitors_leaving_mid_stream_leave_client_disconnected_touchpoints(loaded_server, fake_llm):
    """10 visitors leave at once (bench/disconnects.py: 200)."""
    fake_llm.mode, fake_llm.delay = "trickle", 0.3
    fake_llm.reply = "The Pro plan costs $29 per staff calendar per month, billed monthly or yearly [1]."
    marker = uuid.uuid4().hex[:10]
    messages = [f"{QUESTION} ({marker} #{i})" for i in range(10)]
    results = many(loaded_server.url, messages, leave_after_token=True)
    assert all(r["events"][-1] == "token" and r["done"] is None for r in results)
    stored = wait_rows(loaded_server.data_dir, marker, 10)
    assert sorted(r["question"] for r in stored) == sorted(messages)
    assert {r["outcome"] for r in stored} == {"client_disconnected"}
    for row in stored:
        assert row["reply"] and fake_llm.reply.startswith(row["reply"].strip()), "the part generated is kept"


@pytest.mark.parametrize(
    ("mode", "outcome", "error"),
    [("error", "llm_error", "500"), ("slow", "llm_timeout", "stopped sending tokens"), ("malformed", "llm_error", "")],
)
def test_llm_faults_under_concurrency_fall_back_for_every_visitor(loaded_server, fake_llm, mode, outcome, error):
    """Ten visitors at once while the LLM fails: each gets the grounded offline answer, each touchpoint says why."""
    fake_llm.mode, fake_llm.delay = mode, 6
    marker = uuid.uuid4().hex[:10]
    messages = [f"{QUESTION} ({marker} #{i})" for i in range(10)]
    results = many(loaded_server.url, messages)
    for result in results:
        assert result["events"][0] == "stage" and result["events"][-1] == "done", result
        assert "error" not in result["events"]
        done = result["done"]
        assert done["outcome"] == outcome and done["mode"] == "offline" and "$29" in done["reply"], done
    stored = rows(loaded_server.data_dir, marker)
    assert len(stored) == 10
    for row in stored:
        assert row["outcome"] == outcome and row["mode"] == "offline" and "$29" in row["reply"]
        assert row["error"] and error in row["error"], row["error"]


def test_stream_with_llm_500_sends_the_offline_answer_as_tokens(loaded_server, fake_llm):
    fake_llm.mode = "error"
    result = many(loaded_server.url, [f"{QUESTION} ({uuid.uuid4().hex[:8]})"])[0]
    names = result["events"]
    assert names[:2] == ["stage", "sources"] and names[-1] == "done" and names.count("token") >= 5
    assert result["done"]["outcome"] == "llm_error" and result["done"]["sources"]


def test_unreachable_llm_falls_back_and_says_so(make_data_dir):
    """The LLM's address refuses connections (it is down): offline answer, outcome llm_error, the reason stored."""
    dead = f"http://127.0.0.1:{free_port()}/v1"
    server = Server(make_data_dir(), OPENAI_BASE_URL=dead, OPENAI_API_KEY="k", JOURNEY_LLM_MAX_RETRIES="0")
    try:
        done = httpx.post(f"{server.url}/v1/chat", json={"message": QUESTION}, timeout=30).json()
        assert done["outcome"] == "llm_error" and done["mode"] == "offline" and "$29" in done["reply"]
        row = server.touchpoints(id=done["message_id"])[0]
        assert row["outcome"] == "llm_error" and "Connection" in row["error"]
    finally:
        server.stop()


def test_kill_9_loses_no_exchange_whose_done_was_sent(llm_data, fake_llm):
    """12 turns in flight, SIGKILL: after a restart every message_id a client got in `done` is stored (bench/crash.py
    runs 100 visitors to 300 confirmed)."""
    fake_llm.mode, fake_llm.delay = "trickle", 0.02
    env = llm_env(fake_llm)
    server = Server(llm_data, **env)
    marker = uuid.uuid4().hex[:10]
    confirmed: list[str] = []
    killed = asyncio.Event()

    async def visitor(http: httpx.AsyncClient, n: int) -> None:
        i = 0
        while not killed.is_set():
            result = await stream(http, server.url, f"{QUESTION} ({marker} {n}.{i})")
            if result["done"] is not None:
                confirmed.append(result["done"]["message_id"])
            i += 1

    async def killer() -> None:
        while len(confirmed) < CONFIRMED:
            await asyncio.sleep(0.05)
        server.process.send_signal(signal.SIGKILL)  # no shutdown code runs
        killed.set()

    async def go() -> None:
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=40), timeout=60) as http:
            await asyncio.wait_for(asyncio.gather(killer(), *(visitor(http, n) for n in range(12))), 120)

    try:
        asyncio.run(go())
        server.process.wait(10)
    finally:
        server.stop()
    restarted = Server(llm_data, **env)
    try:
        stored = {r["id"] for r in rows(llm_data, marker)}
        assert httpx.get(f"{restarted.url}/health", timeout=10).status_code == 200
    finally:
        restarted.stop()
    assert len(confirmed) >= CONFIRMED
    missing = [m for m in confirmed if m not in stored]
    assert missing == [], f"{len(missing)} of {len(confirmed)} confirmed exchanges lost"


def test_sigterm_finishes_short_streams_cuts_long_ones_and_records_all(llm_data, fake_llm):
    """SIGTERM with 10 open streams and a plain turn: short replies finish within the grace, long ones are cut.

    All are recorded: the streams cut by the app at 70% of the grace, the plain turn cancelled by uvicorn at the end
    of it (the lifespan waits for its touchpoint before the process exits)."""
    grace = 3.0
    fake_llm.mode, fake_llm.delay = "trickle", 0.2
    long_reply = " ".join(f"word{i}" for i in range(200))  # 40 s of tokens
    fake_llm.reply = lambda body: long_reply if "LONGREPLY" in body["messages"][-1]["content"] else "Pro is $29 [1]."
    env = llm_env(fake_llm, JOURNEY_SHUTDOWN_GRACE_SECONDS=str(grace), JOURNEY_LLM_TIMEOUT="60")
    server = Server(llm_data, **env)
    marker = uuid.uuid4().hex[:10]
    messages = [f"{QUESTION} ({marker} {'LONGREPLY' if i % 2 else 'short'} #{i})" for i in range(10)]
    exit_seconds: list[float] = []

    async def terminate_when_streaming(http: httpx.AsyncClient) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(fake_llm.requests) < 11:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # every stream has sent a token
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        while server.process.poll() is None and time.monotonic() - started < 30:
            await asyncio.sleep(0.05)
        exit_seconds.append(time.monotonic() - started)

    async def plain(http: httpx.AsyncClient) -> None:
        try:
            await http.post(f"{server.url}/v1/chat", json={"message": f"{QUESTION} ({marker} LONGREPLY plain)"})
        except httpx.HTTPError:
            pass  # the server stopped before answering

    async def go() -> list[dict]:
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=20), timeout=60) as http:
            *results, _, _ = await asyncio.gather(
                *(stream(http, server.url, m) for m in messages), plain(http), terminate_when_streaming(http)
            )
            return results

    try:
        results = asyncio.run(go())
    finally:
        server.stop()
    assert exit_seconds and exit_seconds[0] < grace + 4, f"exited after {exit_seconds}"
    short = [r for r, m in zip(results, messages, strict=True) if "short" in m]
    assert all(r["done"] and r["done"]["outcome"] == "ok" for r in short), "short replies finish during the grace"
    long = [r for r, m in zip(results, messages, strict=True) if "LONGREPLY" in m]
    assert all(r["done"] is None and "token" in r["events"] for r in long), "long replies are cut"
    stored = {r["question"]: r for r in rows(llm_data, marker)}
    assert stored.pop(f"{QUESTION} ({marker} LONGREPLY plain)")["outcome"] == "shutdown"
    assert sorted(stored) == sorted(messages), "every stream cut short still has its touchpoint"
    for message, row in stored.items():
        expected = "shutdown" if "LONGREPLY" in message else "ok"
        assert row["outcome"] == expected, (message, row["outcome"])
        if expected == "shutdown":
            assert row["reply"].startswith("word0 word1"), "the words sent before the cut are kept"
