"""`journey ingest` in its own process beside a running `journey serve` on embedded Chroma (issue 18, item 1)."""

from __future__ import annotations

import httpx
from conftest import Server, base_env, run_cli
from sse import stream_chat

DOC = "---\ntitle: Zorblax widget\nstages: [decision]\n---\n## Zorblax price\nThe Zorblax widget costs {price}.\n"


def zorblax(price: str, parts: int) -> str:
    """The Zorblax page; more parts make new passage and sentence ids, which a stale Chroma client cannot find."""
    sections = "".join(
        f"\n## Zorblax part {n}\n" + " ".join(f"Part {n} has step {i}." for i in range(4)) + "\n" for n in range(parts)
    )
    return DOC.format(price=price) + sections


QUESTION = "How much does the Zorblax widget cost?"


def test_ingest_beside_a_running_server_keeps_chat_answering_and_recorded(make_data_dir, tmp_path):
    folder = tmp_path / "beside"
    folder.mkdir()
    (folder / "zorblax.md").write_text(zorblax("$41", 2))
    (folder / "gadget.md").write_text("---\ntitle: Gadget\n---\n## Gadget\nThe gadget is blue.\n")
    data_dir = make_data_dir()
    env = base_env(data_dir)
    assert run_cli("ingest", str(folder), env=env).returncode == 0
    server = Server(data_dir)
    try:
        visitor = "beside-visitor-0001"
        first = httpx.post(f"{server.url}/v1/chat", json={"message": QUESTION, "visitor_id": visitor}, timeout=60)
        assert first.status_code == 200 and "$41" in first.json()["reply"]
        sent = 1
        for round_number, price in enumerate(("$57", "$63"), start=1):
            (folder / "zorblax.md").write_text(zorblax(price, 2 + 3 * round_number))
            if round_number == 2:
                (folder / "gadget.md").unlink()
            changed = run_cli("ingest", str(folder), env=env)
            assert changed.returncode == 0 and "updated 1" in changed.stdout, changed.stdout + changed.stderr
            for _ in range(2):
                reply = httpx.post(
                    f"{server.url}/v1/chat", json={"message": QUESTION, "visitor_id": visitor}, timeout=60
                )
                assert reply.status_code == 200, reply.text
                assert price in reply.json()["reply"], "the server picks up the new version by itself"
                events = dict(stream_chat(server.url, {"message": QUESTION, "visitor_id": visitor}))
                assert "error" not in events and price in events["done"]["reply"]
                sent += 2
            health = httpx.get(f"{server.url}/health", timeout=30)
            assert health.status_code == 200 and health.json()["knowledge"]["stale"] is False
        rows = server.touchpoints(visitor_id=visitor)
        assert len(rows) == sent and {r["outcome"] for r in rows} == {"ok"}
    finally:
        server.stop()


def test_health_is_503_when_the_knowledge_base_cannot_be_read(make_data_dir):
    data_dir = make_data_dir()
    server = Server(data_dir)
    try:
        database = data_dir / "chroma" / "chroma.sqlite3"
        database.write_bytes(b"this is not a database" * 1000)
        health = httpx.get(f"{server.url}/health", timeout=30)
        assert health.status_code == 503, health.text
        assert "cannot be read" in health.json()["detail"]
        reply = httpx.post(f"{server.url}/v1/chat", json={"message": "How much does the pro plan cost?"}, timeout=60)
        assert reply.status_code == 200, "turns are answered from the copy read before"
        assert "$29" in reply.json()["reply"] and len(server.touchpoints(id=reply.json()["message_id"])) == 1
        assert httpx.get(f"{server.url}/health", timeout=30).status_code == 503
    finally:
        server.stop()
