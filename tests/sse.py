"""Reading server-sent events off a real HTTP response, as a browser's EventSource would."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx


def iter_events(response: httpx.Response) -> Iterator[tuple[str, dict]]:
    """Yield (event, parsed data) pairs; comment lines (pings) are skipped."""
    event, data = "message", []
    for line in response.iter_lines():
        if line == "":
            if data:
                yield event, json.loads("\n".join(data))
            event, data = "message", []
        elif line.startswith(":"):
            continue
        elif line.startswith("event:"):
            event = line[len("event:") :].strip()
        elif line.startswith("data:"):
            data.append(line[len("data:") :].removeprefix(" "))


def stream_chat(base_url: str, body: dict, timeout: float = 30) -> list[tuple[str, dict]]:
    """POST /v1/chat/stream and collect every event."""
    with httpx.stream("POST", f"{base_url}/v1/chat/stream", json=body, timeout=timeout) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        return list(iter_events(response))


def parse_events(raw: str) -> list[tuple[str, dict]]:
    """Parse a whole SSE body (as text) the way iter_events reads a response."""

    class _Lines:
        def iter_lines(self):
            yield from raw.replace("\r\n", "\n").split("\n")

    return list(iter_events(_Lines()))  # type: ignore[arg-type]
