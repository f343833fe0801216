"""OpenAI-compatible fake LLM server for tests (real HTTP on 127.0.0.1).

Usage::

    with FakeLLMServer() as fake:
        client = openai.OpenAI(base_url=fake.base_url, api_key="test")
        fake.reply = "Some answer [1]."
        fake.reply = ["NO", "_ANS", "WER"]  # streamed in exactly these pieces
        fake.mode = "stall"          # ok | error | slow | stall | malformed | drop | trickle
        ...
        assert fake.requests[-1]["messages"][0]["role"] == "system"

Fault modes apply to ``/v1/chat/completions`` only; ``/v1/models`` and
``/v1/embeddings`` always answer normally. ``trickle`` streams one word every
``delay`` seconds (a slow but live LLM). ``GET /fake/stats`` returns how long the
fake itself spent on each chat completion (for benchmarks that subtract it).

As a separate process (benchmarks)::

    python tests/fake_llm.py --port 9000 --mode trickle --delay 1 --stage-votes
    python tests/fake_llm.py --port 9000 --stage-table evals/stages_dev.jsonl  # votes from a fixed table
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import math
import re
import socket
import struct
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

DEFAULT_REPLY = "Grounded answer from the fake LLM [1]."
DEFAULT_DELAY = 5.0
DEFAULT_MODEL = "fake"
EMBEDDING_DIM = 64
MODES = ("ok", "error", "slow", "stall", "malformed", "drop", "trickle")

Reply = str | list[str] | Callable[[dict[str, Any]], str | list[str]]


class DroppedConnection(Exception):
    """Raised inside a stream to make uvicorn cut the connection mid-response."""


class _HideDroppedConnection(logging.Filter):
    """Keeps uvicorn from logging a traceback for deliberate ``drop`` mode disconnects."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Reject records carrying a DroppedConnection."""
        return not (record.exc_info and isinstance(record.exc_info[1], DroppedConnection))


logging.getLogger("uvicorn.error").addFilter(_HideDroppedConnection())


class FakeLLM:
    """Mutable behaviour shared between the test thread and the server thread."""

    def __init__(self) -> None:
        """Start in ok mode with the default reply and delay."""
        self._lock = threading.Lock()
        self._requests: list[dict[str, Any]] = []
        self._embedding_requests: list[dict[str, Any]] = []
        self._timings: list[dict[str, float]] = []
        self.reset()

    def reset(self) -> None:
        """Restore mode, reply and delay defaults and forget recorded requests."""
        self.mode = "ok"
        self.reply: Reply = DEFAULT_REPLY
        self.delay: float = DEFAULT_DELAY
        with self._lock:
            self._requests.clear()
            self._embedding_requests.clear()
            self._timings.clear()

    @property
    def mode(self) -> str:
        """Current fault mode."""
        return self._mode

    @mode.setter
    def mode(self, value: str) -> None:
        if value not in MODES:
            raise ValueError(f"unknown fake LLM mode {value!r}; expected one of {MODES}")
        self._mode = value

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Snapshot of every chat completion request body received, oldest first."""
        with self._lock:
            return list(self._requests)

    @property
    def embedding_requests(self) -> list[dict[str, Any]]:
        """Snapshot of every embeddings request body received, oldest first."""
        with self._lock:
            return list(self._embedding_requests)

    def record(self, body: dict[str, Any], *, embedding: bool = False) -> None:
        """Append a request body to the recorded list."""
        with self._lock:
            (self._embedding_requests if embedding else self._requests).append(body)

    def timed(self, first: float, total: float) -> None:
        """Record the fake's own seconds to the first byte and to the end of one chat completion."""
        with self._lock:
            self._timings.append({"first": first, "total": total})

    @property
    def timings(self) -> list[dict[str, float]]:
        """Snapshot of the fake's own time per chat completion, oldest first."""
        with self._lock:
            return list(self._timings)

    def reply_for(self, body: dict[str, Any]) -> list[str]:
        """Reply pieces for a request (``reply`` or ``reply(body)``): a list as it is, a string split into words."""
        reply = self.reply
        reply = reply(body) if callable(reply) else reply
        return list(reply) if isinstance(reply, list) else _split_words(reply)


# --- response builders -------------------------------------------------------


def _error(status: int, message: str, err_type: str, code: str) -> JSONResponse:
    """OpenAI-style error response."""
    error = {"message": message, "type": err_type, "param": None, "code": code}
    return JSONResponse({"error": error}, status_code=status)


def _count_tokens(text: str) -> int:
    """Crude token count: whitespace-separated words."""
    return len(text.split())


def _prompt_tokens(messages: list[dict[str, Any]]) -> int:
    """Crude prompt token count over string or multi-part message contents."""
    total = 0
    for message in messages:
        content = message.get("content") or ""
        if isinstance(content, list):
            content = " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
        total += _count_tokens(str(content))
    return total


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    """OpenAI usage object."""
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _completion(body: dict[str, Any], text: str) -> dict[str, Any]:
    """Non-streaming ``chat.completion`` object."""
    message = {"role": "assistant", "content": text, "refusal": None}
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model") or DEFAULT_MODEL,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}],
        "usage": _usage(_prompt_tokens(body.get("messages", [])), _count_tokens(text)),
    }


class _ChunkFactory:
    """Builds ``chat.completion.chunk`` SSE lines sharing one id."""

    def __init__(self, body: dict[str, Any]) -> None:
        """Remember id, creation time and model for all chunks of one stream."""
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.model = body.get("model") or DEFAULT_MODEL

    def sse(
        self, delta: dict[str, Any] | None, finish_reason: str | None = None, usage: dict[str, int] | None = None
    ) -> str:
        """One ``data: {...}`` event; ``delta=None`` yields an empty-choices (usage) chunk."""
        choices = (
            [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]
        )
        chunk: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }
        if usage is not None:
            chunk["usage"] = usage
        return f"data: {json.dumps(chunk)}\n\n"


def _split_words(text: str) -> list[str]:
    """Split text into word chunks (trailing whitespace kept) that join back exactly."""
    return re.findall(r"\s*\S+\s*", text) or ([text] if text else [])


async def _stream(mode: str, delay: float, body: dict[str, Any], words: list[str]) -> AsyncIterator[str]:
    """SSE body for a streaming chat completion sending these content pieces, with the given fault mode applied."""
    chunks = _ChunkFactory(body)
    text = "".join(words)
    yield chunks.sse({"role": "assistant", "content": ""})
    if mode == "malformed":
        yield "data: {not json\n\n"
        return
    for index, word in enumerate(words):
        if index == 2 and mode == "drop":
            raise DroppedConnection("fake LLM dropped the connection")
        if index == 2 and mode == "stall":
            await asyncio.sleep(delay)
        if index > 0 and mode == "trickle":
            await asyncio.sleep(delay)
        yield chunks.sse({"content": word})
    if mode == "drop":
        raise DroppedConnection("fake LLM dropped the connection")
    if mode == "stall" and len(words) < 3:
        await asyncio.sleep(delay)
    yield chunks.sse({}, finish_reason="stop")
    if (body.get("stream_options") or {}).get("include_usage"):
        usage = _usage(_prompt_tokens(body.get("messages", [])), _count_tokens(text))
        yield chunks.sse(None, usage=usage)
    yield "data: [DONE]\n\n"


# --- embeddings --------------------------------------------------------------


def fake_embedding(item: Any) -> list[float]:
    """Deterministic L2-normalised EMBEDDING_DIM vector derived from a hash of the input."""
    data = (item if isinstance(item, str) else json.dumps(item)).encode()
    raw = b""
    counter = 0
    while len(raw) < EMBEDDING_DIM * 4:
        raw += hashlib.sha256(data + counter.to_bytes(4, "big")).digest()
        counter += 1
    ints = struct.unpack(f"<{EMBEDDING_DIM}I", raw[: EMBEDDING_DIM * 4])
    vector = [value / 2**31 - 1.0 for value in ints]
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]


def _embedding_inputs(raw: Any) -> list[Any]:
    """Normalise ``input``: a string, a token list, or a list of either."""
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, list) and raw and all(isinstance(x, int) for x in raw):
        return [raw]
    return list(raw or [])


def _encode(vector: list[float], encoding_format: str | None) -> list[float] | str:
    """Encode a vector as floats or as base64 little-endian float32 (openai's default)."""
    if encoding_format == "base64":
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
    return vector


# --- app ---------------------------------------------------------------------


async def _json_body(request: Request) -> dict[str, Any] | None:
    """Parsed JSON object body, or None if it is not one."""
    try:
        body = await request.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


async def _timed_stream(state: FakeLLM, started: float, pieces: AsyncIterator[str]) -> AsyncIterator[str]:
    """Pass a stream through, recording the time to its first and last piece."""
    first = None
    async for piece in pieces:
        if first is None:
            first = time.perf_counter() - started
        yield piece
    state.timed(first or 0.0, time.perf_counter() - started)


def create_fake_llm_app(fake: FakeLLM | None = None) -> Starlette:
    """Starlette app serving the fake OpenAI API; behaviour is read from ``fake``."""
    state = fake if fake is not None else FakeLLM()

    async def chat_completions(request: Request) -> Response:
        """POST /v1/chat/completions."""
        started = time.perf_counter()
        body = await _json_body(request)
        if body is None or not isinstance(body.get("messages"), list):
            message = "body must be JSON with a 'messages' list"
            return _error(400, message, "invalid_request_error", "bad_request")
        state.record(body)
        mode, delay = state.mode, state.delay
        if mode == "error":
            return _error(500, "The fake LLM failed on purpose.", "server_error", "fake_error")
        stream = bool(body.get("stream"))
        if mode == "slow" or (mode == "stall" and not stream):
            await asyncio.sleep(delay)
        words = state.reply_for(body)
        text = "".join(words)
        if not stream:
            if mode == "malformed":
                return Response('{"id": "chatcmpl-broken", "choices": [', media_type="application/json")
            response = JSONResponse(_completion(body, text))
            spent = time.perf_counter() - started
            state.timed(spent, spent)
            return response
        headers = {"Cache-Control": "no-cache"}
        pieces = _timed_stream(state, started, _stream(mode, delay, body, words))
        return StreamingResponse(pieces, media_type="text/event-stream", headers=headers)

    async def models(request: Request) -> Response:
        """GET /v1/models."""
        model = {"id": DEFAULT_MODEL, "object": "model", "created": 0, "owned_by": "fake-llm"}
        return JSONResponse({"object": "list", "data": [model]})

    async def embeddings(request: Request) -> Response:
        """POST /v1/embeddings."""
        body = await _json_body(request)
        if body is None or "input" not in body:
            return _error(400, "body must be JSON with an 'input'", "invalid_request_error", "bad_request")
        state.record(body, embedding=True)
        items = _embedding_inputs(body["input"])
        encoding_format = body.get("encoding_format")
        data = [
            {"object": "embedding", "index": i, "embedding": _encode(fake_embedding(item), encoding_format)}
            for i, item in enumerate(items)
        ]
        tokens = sum(_count_tokens(x) if isinstance(x, str) else len(x) for x in items)
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        return JSONResponse(
            {"object": "list", "data": data, "model": body.get("model") or DEFAULT_MODEL, "usage": usage}
        )

    async def stats(request: Request) -> Response:
        """GET /fake/stats: requests received and the fake's own time per chat completion."""
        return JSONResponse({"requests": len(state.requests), "timings": state.timings})

    app = Starlette(
        routes=[
            Route("/fake/stats", stats, methods=["GET"]),
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
            Route("/v1/embeddings", embeddings, methods=["POST"]),
        ]
    )
    app.state.fake = state
    return app


# --- server ------------------------------------------------------------------


class FakeLLMServer(FakeLLM):
    """Fake LLM served by uvicorn in a background thread; use as a context manager."""

    def __init__(self, startup_timeout: float = 10.0) -> None:
        """Prepare (but do not start) the server."""
        super().__init__()
        self.startup_timeout = startup_timeout
        self.port: int = 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    @property
    def base_url(self) -> str:
        """OpenAI base URL, e.g. ``http://127.0.0.1:54321/v1``."""
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> FakeLLMServer:
        """Bind a free port, start uvicorn in a thread and wait until it answers."""
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        config = uvicorn.Config(
            create_fake_llm_app(self), log_config=None, access_log=False, lifespan="off", timeout_graceful_shutdown=1
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, name=f"fake-llm-{self.port}", daemon=True
        )
        self._thread.start()
        self._wait_until_ready()
        return self

    def _wait_until_ready(self) -> None:
        """Poll GET /v1/models until it returns 200 or the startup timeout passes."""
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._thread is None or not self._thread.is_alive():
                raise RuntimeError("fake LLM server thread exited during startup")
            try:
                if httpx.get(f"{self.base_url}/models", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"fake LLM server did not answer within {self.startup_timeout}s")

    def stop(self, timeout: float = 5.0) -> None:
        """Ask uvicorn to exit (open responses are cancelled after 1s) and join the thread."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None

    def __enter__(self) -> FakeLLMServer:
        """Start the server."""
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Stop the server."""
        self.stop()


_VOTED_MESSAGE = re.compile(r"<<<\n(.*)\n>>>", re.DOTALL)  # where app/stages/llm.py puts the visitor's message
TABLE_CONFIDENCE = 0.8


def stage_vote_or(
    answer: str, stage: str = "decision", table: dict[str, str] | None = None
) -> Callable[[dict[str, Any]], str]:
    """A reply: a JSON stage vote for structured-output (stage) requests, ``answer`` for the others.

    With a table (message -> stage) the vote is the table's stage for the message being classified, and a
    message not in it gets a vote that says nothing (confidence 1/8: every stage equally likely).
    """

    def reply(body: dict[str, Any]) -> str:
        if (body.get("response_format") or {}).get("type") != "json_schema":
            return answer
        if table is None:
            return json.dumps({"stage": stage, "confidence": 0.6, "reason": "fake vote"})
        found = _VOTED_MESSAGE.search(str(body["messages"][-1]["content"]))
        voted = table.get(found.group(1).strip()) if found else None
        if voted is None:
            return json.dumps({"stage": stage, "confidence": 0.125, "reason": "not in the table"})
        return json.dumps({"stage": voted, "confidence": TABLE_CONFIDENCE, "reason": "from the table"})

    return reply


def stage_table(*paths: str) -> dict[str, str]:
    """Message -> stage from `journey eval-stages` files: the last user message of each case and its stage."""
    table = {}
    for path in paths:
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            if line.strip():
                case = json.loads(line)
                table[case["messages"][-1]["content"].strip()] = case["stage"]
    return table


def main() -> None:
    """Serve the fake LLM in this process until interrupted (for benchmarks)."""
    import argparse

    parser = argparse.ArgumentParser(description="OpenAI-compatible fake LLM")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mode", choices=MODES, default="ok")
    parser.add_argument("--delay", type=float, default=DEFAULT_DELAY)
    parser.add_argument("--reply", default=DEFAULT_REPLY)
    parser.add_argument("--stage-votes", action="store_true", help="answer stage requests with a JSON vote")
    parser.add_argument(
        "--stage-table",
        nargs="+",
        metavar="FILE",
        help="answer stage requests from a fixed table: the stage of each case's last message in these eval files",
    )
    parser.add_argument("--long-words", type=int, default=0, help="reply with N words to prompts containing LONGREPLY")
    args = parser.parse_args()
    fake = FakeLLM()
    fake.mode, fake.delay = args.mode, args.delay
    table = stage_table(*args.stage_table) if args.stage_table else None
    short = stage_vote_or(args.reply, table=table) if args.stage_votes or table else (lambda body: args.reply)
    long = " ".join(f"word{i}" for i in range(args.long_words))

    def reply(body: dict[str, Any]) -> str:
        last = str((body.get("messages") or [{}])[-1].get("content", ""))
        vote = (body.get("response_format") or {}).get("type") == "json_schema"
        return long if args.long_words and "LONGREPLY" in last and not vote else short(body)

    fake.reply = reply
    config = uvicorn.Config(
        create_fake_llm_app(fake),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        backlog=4096,
        timeout_graceful_shutdown=1,
    )
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
