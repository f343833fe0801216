"""LangChain fake chat models that a Journey Guide server loads with JOURNEY_LLM=python:fake_chat_models:scripted.

The server process imports this module (PYTHONPATH holds tests/). At each call the model reads what to say from the
JSON file FAKE_CHAT_SCRIPT names and appends the call to the JSON-lines file FAKE_CHAT_LOG, so a test steers it and
sees what it was asked across the process boundary. The script:

    {"reply": "The Pro plan costs $29 [1].", "sleep": 0.02, "votes": {"tell me about the reports": "support"}}

`reply` is streamed one character at a time, `sleep` seconds before each; a stage-vote prompt (app/stages/llm.py) is
answered with a JSON vote for the message from `votes`, or with text that is not a vote when the message is not there.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGenerationChunk

VOTE_PROMPT = "Classify which customer-journey stage"
_VOTED_MESSAGE = re.compile(r"<<<\n(.*)\n>>>", re.DOTALL)


class ScriptedChatModel(FakeListChatModel):
    """LangChain's FakeListChatModel, its response and delay read from a script file at each call."""

    script: Path
    log: Path

    def _load(self, messages: list[BaseMessage]) -> None:
        data = json.loads(self.script.read_text(encoding="utf-8"))
        last = str(messages[-1].content)
        vote = last.startswith(VOTE_PROMPT)
        with self.log.open("a", encoding="utf-8") as log:
            log.write(json.dumps({"vote": vote, "messages": [[m.type, m.content] for m in messages]}) + "\n")
        if vote:
            found = _VOTED_MESSAGE.search(last)
            stage = data.get("votes", {}).get(found.group(1).strip()) if found else None
            answer = {"stage": stage, "confidence": 0.9, "reason": "from the script"}
            self.responses = [json.dumps(answer) if stage else "I am not sure."]
            self.sleep = None
        else:
            self.responses = [data["reply"]]
            self.sleep = data.get("sleep")
        self.i = 0

    def _call(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> str:
        self._load(messages)
        return super()._call(messages, *args, **kwargs)

    def _stream(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        self._load(messages)
        yield from super()._stream(messages, *args, **kwargs)

    async def _astream(
        self, messages: list[BaseMessage], *args: Any, **kwargs: Any
    ) -> AsyncIterator[ChatGenerationChunk]:
        self._load(messages)
        async for chunk in super()._astream(messages, *args, **kwargs):
            yield chunk


def scripted() -> ScriptedChatModel:
    """The scripted fake, its files named by FAKE_CHAT_SCRIPT and FAKE_CHAT_LOG."""
    return ScriptedChatModel(
        responses=[""], script=Path(os.environ["FAKE_CHAT_SCRIPT"]), log=Path(os.environ["FAKE_CHAT_LOG"])
    )
