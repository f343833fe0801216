"""`journey chat`: talk to the guide from a terminal, against a running server or in-process, streaming."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import AsyncIterator, Callable
from typing import TextIO

import anyio
import httpx
from anyio import to_thread

from app.config import Settings

PROMPT = "you> "
COMMANDS = "/new starts a new conversation, /quit (or end of input) leaves"

Turn = Callable[[dict], AsyncIterator[tuple[str, dict]]]


def _sse(lines) -> list[tuple[str, dict]]:
    """(event, data) pairs from a block of SSE lines."""
    event, data = "message", []
    for line in lines:
        if line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
    return [(event, json.loads("\n".join(data)))] if data else []


def remote_turns(url: str, timeout: float = 120) -> Turn:
    """Turns streamed from a running server's POST /v1/chat/stream."""

    async def turn(body: dict) -> AsyncIterator[tuple[str, dict]]:
        async with (
            httpx.AsyncClient(base_url=url.rstrip("/"), timeout=timeout) as client,
            client.stream("POST", "/v1/chat/stream", json=body) as response,
        ):
            if response.status_code != 200:
                await response.aread()
                try:
                    detail = response.json()
                    message = detail.get("error") or detail.get("detail") or response.text
                except ValueError:
                    message = response.text
                yield "error", {"message": f"HTTP {response.status_code}: {message}"}
                return
            block: list[str] = []
            async for line in response.aiter_lines():
                if line:
                    block.append(line)
                    continue
                for item in _sse(block):
                    yield item
                block = []

    return turn


def local_turns(settings: Settings) -> tuple[Turn, Callable[[], None]]:
    """Turns run in this process on the configured data dir (the services are built here: a few seconds)."""
    from app.chat.schemas import ChatRequest
    from app.chat.service import TurnState
    from app.state import build_services
    from app.store.service import ConversationNotFound

    services = build_services(settings)

    async def turn(body: dict) -> AsyncIterator[tuple[str, dict]]:
        try:
            prepared = await services.chat.prepare(ChatRequest.model_validate(body))
        except ConversationNotFound:
            yield "error", {"message": "conversation not found for this visitor"}
            return
        state = TurnState()
        try:
            async for item in services.chat.run(prepared, state):
                yield item
        finally:
            if not state.recorded:
                await services.chat.record(prepared, state, outcome="client_disconnected")

    return turn, services.close


def _footer(done: dict) -> str:
    stage = done.get("stage") or {}
    line = f"  [{stage.get('name')} {stage.get('confidence', 0):.2f} · {done.get('mode')} · {done.get('outcome')}]"
    for i, source in enumerate(done.get("sources") or [], 1):
        line += f"\n  [{i}] {source['title']} {source['url']}"
    return line


async def converse(turn: Turn, *, read: Callable[[], str], out: TextIO, as_json: bool, interactive: bool) -> int:
    """Read messages until /quit or end of input; stream each reply; return how many turns were answered."""
    ids: dict[str, str] = {}
    answered = 0
    if interactive:
        out.write(f"Journey Guide: ask anything. {COMMANDS}.\n")
    while True:
        if interactive:
            out.write(PROMPT)
            out.flush()
        line = await to_thread.run_sync(read)
        if not line:
            break
        message = line.strip()
        if message in ("/quit", "/exit"):
            break
        if message == "/new":
            ids.pop("conversation_id", None)
            if not as_json:
                out.write("(new conversation)\n")
            continue
        if not message:
            continue
        if not as_json:
            out.write("guide> ")
        async for name, data in turn({"message": message, **ids}):
            if name == "token" and not as_json:
                out.write(data["text"])
                out.flush()
            elif name == "done":
                ids = {"conversation_id": data["conversation_id"], "visitor_id": data["visitor_id"]}
                answered += 1
                out.write(json.dumps(data, ensure_ascii=False) + "\n" if as_json else "\n" + _footer(data) + "\n")
            elif name == "error":
                problem = data.get("message")
                out.write(json.dumps({"error": problem}) + "\n" if as_json else f"\n! {problem}\n")
        out.flush()
    return answered


def run_chat(*, url: str | None, settings: Settings, as_json: bool) -> int:
    """The `journey chat` command: returns the number of answered turns."""
    interactive = sys.stdin.isatty() and not as_json
    logging.getLogger("httpx").setLevel(logging.WARNING)  # no request log lines between the replies
    close = None
    if url:
        turn = remote_turns(url)
    else:
        turn, close = local_turns(settings)
    try:
        return anyio.run(
            lambda: converse(turn, read=sys.stdin.readline, out=sys.stdout, as_json=as_json, interactive=interactive)
        )
    finally:
        if close is not None:
            close()
