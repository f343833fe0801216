"""LLMAnswerer and LLMStageClassifier against the fake OpenAI-compatible server: the upstream HTTP stream is
closed whenever the answer stops early, and a stage vote outside the schema counts as no vote. The answer's
event-stream parsing is also tested against a bare HTTP server that writes a scripted body, piece by piece."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import REPO
from fake_llm import TABLE_CONFIDENCE, FakeLLMServer, stage_table, stage_vote_or

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


def test_http_error_status_is_an_llm_error_with_the_status(settings: Settings, fake_llm: FakeLLMServer) -> None:
    fake_llm.mode = "error"

    async def go() -> list[str]:
        return [piece async for piece in LLMAnswerer(settings).stream(MESSAGES)]

    with pytest.raises(LLMFailure) as failure:
        asyncio.run(go())
    assert failure.value.outcome == "llm_error"
    assert "InternalServerError" in failure.value.detail and "500" in failure.value.detail


# --- the event stream, as a server may write it -----------------------------------------------------------------

Script = list[bytes | float]  # body pieces, each written (and flushed) as one HTTP chunk; a float is a pause


class ScriptedSSE:
    """A bare HTTP/1.1 server: POST /v1/chat/completions answers 200 text/event-stream (or `content_type`) with
    `script`, written piece by piece as chunks of a chunked body, so the client reads what a real server would send,
    pauses included."""

    def __init__(self) -> None:
        self.script: Script = []
        self.content_type = "text/event-stream"
        script_of = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - the http.server name
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self.send_response(200)
                self.send_header("Content-Type", script_of.content_type)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                try:
                    for piece in script_of.script:
                        if isinstance(piece, float):
                            time.sleep(piece)
                            continue
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                        self.wfile.flush()
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                except OSError:  # the client hung up
                    self.close_connection = True

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="scripted-sse", daemon=True)
        self.thread.start()
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def scripted_server() -> Iterator[ScriptedSSE]:
    server = ScriptedSSE()
    yield server
    server.close()


@pytest.fixture()
def scripted(scripted_server: ScriptedSSE, monkeypatch: pytest.MonkeyPatch) -> tuple[ScriptedSSE, Settings]:
    """The scripted server, emptied, and settings pointing at it with short timeouts."""
    scripted_server.script, scripted_server.content_type = [], "text/event-stream"
    monkeypatch.setenv("OPENAI_BASE_URL", scripted_server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    settings = Settings(llm_model="fake-model", llm_timeout=5, llm_token_timeout=0.5, llm_max_retries=0)
    return scripted_server, settings


def event(content: str | None = None, **fields: object) -> bytes:
    """One `data:` event holding a chat.completion.chunk; content None gives a chunk without choices."""
    choices = [] if content is None else [{"index": 0, "delta": {"content": content}, "finish_reason": None}]
    chunk = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "choices": choices, **fields}
    return b"data: " + json.dumps(chunk, ensure_ascii=False).encode() + b"\n\n"


def run_stream(settings: Settings) -> tuple[list[str], LLMFailure | None]:
    """The pieces one answer yielded, and the failure that ended it, if any."""
    got: list[str] = []

    async def go() -> None:
        async for piece in LLMAnswerer(settings).stream(MESSAGES):
            got.append(piece)

    try:
        asyncio.run(go())
    except LLMFailure as failure:
        return got, failure
    return got, None


def test_error_object_mid_stream_is_an_llm_error(scripted: tuple[ScriptedSSE, Settings]) -> None:
    server, settings = scripted
    error = b'data: {"error": {"message": "The model is overloaded.", "type": "server_error", "code": null}}\n\n'
    server.script = [event("one "), error, event("never"), b"data: [DONE]\n\n"]
    got, failure = run_stream(settings)
    assert got == ["one "]
    assert failure is not None and failure.outcome == "llm_error" and "The model is overloaded." in failure.detail


def test_what_follows_done_is_ignored(scripted: tuple[ScriptedSSE, Settings]) -> None:
    server, settings = scripted
    server.script = [event("one "), event("two"), b"data: [DONE]\n\n", b"data: {not json\n\n", b"garbage\n"]
    assert run_stream(settings) == (["one ", "two"], None)
    assert run_stream(settings) == (["one ", "two"], None), "a second answer after the first one's tail"


def test_comments_fields_blank_lines_and_chunks_without_text_are_skipped(
    scripted: tuple[ScriptedSSE, Settings],
) -> None:
    server, settings = scripted
    server.script = [
        b": keep-alive\n\n",
        b"event: message\r\nid: 1\r\nretry: 1000\r\n",
        event("one ").replace(b"\n", b"\r\n"),  # CRLF line ends
        b":\n\n\n",
        event(None, usage={"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}),  # no choices
        b'data: {"choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": null}]}\n\n',
        event("two\u2028three "),  # U+2028 unescaped inside the JSON string: not a line end
        b'data:{"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}\r',  # no space, CR line end
        b"\rdata: [DONE]\n\n",
    ]
    assert run_stream(settings) == (["one ", "two\u2028three "], None)


def test_a_line_cut_across_reads_is_joined(scripted: tuple[ScriptedSSE, Settings]) -> None:
    server, settings = scripted
    line = event("café ")
    cut = line.index("é".encode()) + 1  # inside the two bytes of é
    server.script = [line[:cut], 0.05, line[cut:-1], 0.05, line[-1:], event("au lait"), b"data: [DONE]\n\n"]
    assert run_stream(settings) == (["café ", "au lait"], None)


def test_keep_alive_comments_do_not_reset_the_token_timeout(scripted: tuple[ScriptedSSE, Settings]) -> None:
    server, settings = scripted  # token timeout 0.5 s
    server.script = [event("one "), *[b": keep-alive\n\n", 0.2] * 8, event("late"), b"data: [DONE]\n\n"]
    started = time.monotonic()
    got, failure = run_stream(settings)
    waited = time.monotonic() - started
    assert got == ["one "] and waited < 1.2
    assert failure is not None and failure.outcome == "llm_timeout" and "stopped sending tokens" in failure.detail


def test_data_that_is_not_a_chunk_object_is_an_llm_error(scripted: tuple[ScriptedSSE, Settings]) -> None:
    server, settings = scripted
    server.script = [event("one "), b"data: [1, 2]\n\n", b"data: [DONE]\n\n"]
    got, failure = run_stream(settings)
    assert got == ["one "] and failure is not None and failure.outcome == "llm_error"


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
    assert request["model"] == "fake-model" and request["max_completion_tokens"] == 120 and "stream" not in request


def test_fake_llm_table_mode_votes_the_stage_of_the_message_in_the_table(settings: Settings, fake_llm) -> None:
    fake_llm.reply = stage_vote_or("an answer", table={"the calendar sync is broken": "support"})
    classifier = LLMStageClassifier(settings, load_journey(settings.knowledge_dir / "stages.yaml"))

    async def both():
        return [await classifier.classify(StageSignals(message=m)) for m in ("the calendar sync is broken", "hm?")]

    known, unknown = asyncio.run(both())
    assert known is not None and (known.stage, known.confidence) == ("support", TABLE_CONFIDENCE)
    assert unknown is not None and unknown.confidence == 1 / 8, "a message not in the table gets a vote saying nothing"
    table = stage_table(str(REPO / "evals" / "stages_dev.jsonl"), str(REPO / "evals" / "stages_real_dev.jsonl"))
    first = json.loads((REPO / "evals" / "stages_real_dev.jsonl").read_text().splitlines()[0])
    assert len(table) > 600 and table[first["messages"][-1]["content"].strip()] == first["stage"]


SIGNALS = StageSignals(message="the calendar sync is broken")
NO_VOTE = "LLM stage classification failed"


def classify(settings: Settings) -> object:
    """One stage classification with these settings, in a fresh event loop."""
    classifier = LLMStageClassifier(settings, load_journey(settings.knowledge_dir / "stages.yaml"))
    return asyncio.run(classifier.classify(SIGNALS))


@pytest.mark.parametrize(("mode", "error"), [("error", "InternalServerError"), ("malformed", "JSONDecodeError")])
def test_failed_stage_request_is_no_vote(
    settings: Settings, fake_llm: FakeLLMServer, caplog: pytest.LogCaptureFixture, mode: str, error: str
) -> None:
    fake_llm.mode = mode
    with caplog.at_level("WARNING", logger="app.stages.llm"):
        assert classify(settings) is None
    assert f"{NO_VOTE}: {error}" in caplog.text
    assert len(fake_llm.requests) == 1, "no retry"


def test_slow_stage_vote_is_no_vote_within_the_stage_timeout(
    settings: Settings, fake_llm: FakeLLMServer, caplog: pytest.LogCaptureFixture
) -> None:
    fake_llm.mode, fake_llm.delay = "slow", 1.0
    fake_llm.reply = json.dumps({"stage": "support", "confidence": 0.7, "reason": "it is broken"})
    quick = settings.model_copy(update={"llm_stage_timeout": 0.3})
    started = time.monotonic()
    with caplog.at_level("WARNING", logger="app.stages.llm"):
        assert classify(quick) is None
    assert time.monotonic() - started < 0.8 and NO_VOTE in caplog.text
    time.sleep(1.0)  # the fake finishes the abandoned response, so no late timing lands in another test
    fake_llm.mode = "ok"
    vote = classify(quick)
    assert vote is not None and vote.stage == "support", "a later call goes through"


def test_unreachable_llm_is_no_vote(settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as closed:  # a port nothing listens on once this block ends
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    down = settings.model_copy(update={"openai_base_url": f"http://127.0.0.1:{port}/v1"})
    with caplog.at_level("WARNING", logger="app.stages.llm"):
        assert classify(down) is None
    assert f"{NO_VOTE}: APIConnectionError" in caplog.text


def test_unreachable_llm_is_an_error_not_a_timeout(settings: Settings) -> None:
    with socket.socket() as closed:  # a port nothing listens on once this block ends
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    down = settings.model_copy(update={"openai_base_url": f"http://127.0.0.1:{port}/v1"})

    async def go() -> LLMFailure:
        with pytest.raises(LLMFailure) as failed:
            async for _ in LLMAnswerer(down).stream(MESSAGES):
                pass
        return failed.value

    failure = asyncio.run(go())
    assert failure.outcome == "llm_error" and failure.detail.startswith("APIConnectionError"), failure.detail


def completion(message: dict[str, object]) -> bytes:
    """A non-streamed chat.completion body holding `message`."""
    choice = {"index": 0, "message": {"role": "assistant", **message}, "finish_reason": "stop", "logprobs": None}
    return json.dumps({"id": "chatcmpl-1", "object": "chat.completion", "choices": [choice]}).encode()


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (completion({"content": None, "refusal": "I can't help with that."}), "ValidationError"),
        (b'{"id": "chatcmpl-1", "object": "chat.completion", "choices": []}', "IndexError"),
        (b'{"error": {"message": "overloaded", "type": "server_error"}}', "KeyError"),
        (completion({"refusal": None}), "KeyError"),
        (b"[1, 2]", "TypeError"),
        (b"", "JSONDecodeError"),
    ],
    ids=["refusal", "no-choices", "error-object", "no-content", "not-an-object", "empty"],
)
def test_stage_reply_without_a_vote_is_no_vote(
    scripted: tuple[ScriptedSSE, Settings], caplog: pytest.LogCaptureFixture, body: bytes, error: str
) -> None:
    server, settings = scripted
    server.content_type, server.script = "application/json", [body] if body else []
    with caplog.at_level("WARNING", logger="app.stages.llm"):
        assert classify(settings) is None
    assert f"{NO_VOTE}: {error}" in caplog.text
