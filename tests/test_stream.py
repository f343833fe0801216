"""POST /v1/chat/stream: event order, the wire format, and touchpoints written before `done`."""

from __future__ import annotations

import socket

from sse import stream_chat


def test_stage_first_tokens_then_done_last(offline_server):
    events = stream_chat(offline_server.url, {"message": "How much does the pro plan cost?"})
    names = [name for name, _ in events]
    assert names[0] == "stage"
    assert names[1] == "sources"
    assert names[-1] == "done"
    assert names.count("done") == 1 and "error" not in names
    assert names.count("token") >= 5, "the reply must arrive in pieces"
    stage, done = events[0][1], events[-1][1]
    assert stage["name"] == "decision"
    assert done["stage"]["name"] == "decision"
    tokens = "".join(data["text"] for name, data in events if name == "token")
    assert tokens == done["reply"]
    assert events[1][1]["sources"] == done["sources"]
    assert set(done) >= {"conversation_id", "message_id", "reply", "stage", "sources", "suggestions", "handoff"}


def test_touchpoint_is_committed_before_done(offline_server):
    events = stream_chat(offline_server.url, {"message": "How do I connect my Outlook calendar?"})
    done = events[-1][1]
    rows = offline_server.touchpoints(id=done["message_id"])
    assert len(rows) == 1 and rows[0]["outcome"] == "ok" and rows[0]["reply"] == done["reply"]


def test_wire_format_is_plain_sse(offline_server):
    """Raw bytes: `event: stage` then a JSON data line, CRLF-separated as sse-starlette writes it."""
    host, port = "127.0.0.1", offline_server.port
    body = b'{"message": "What is Lumio?"}'
    request = (
        f"POST /v1/chat/stream HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall(request)
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    head, _, rest = raw.partition(b"\r\n\r\n")
    assert b"200 OK" in head.split(b"\r\n")[0]
    assert b"x-accel-buffering: no" in head.lower()
    assert b"event: stage\r\ndata: {" in rest
    assert b"event: done\r\ndata: {" in rest


def test_stream_and_plain_chat_agree(offline_server):
    import httpx

    plain = httpx.post(f"{offline_server.url}/v1/chat", json={"message": "Can I cancel anytime?"}, timeout=30).json()
    streamed = stream_chat(offline_server.url, {"message": "Can I cancel anytime?"})[-1][1]
    assert plain["reply"] == streamed["reply"]
    assert plain["stage"]["name"] == streamed["stage"]["name"]
    assert plain["sources"] == streamed["sources"]
