"""Database faults lose no touchpoint: exchanges wait in an fsync'd spool and are written, once, when it is back."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from conftest import Server, create_pg_database, free_port
from sqlalchemy import select
from sse import stream_chat

from app.config import Settings
from app.store.db import make_engine, make_sessionmaker
from app.store.models import Touchpoint
from app.store.service import ExchangeRecord, record_exchange
from app.store.spool import EventRecord, Spool


def _record(n: int, *, conversation: str = "conv-a", visitor: str = "visitor-a") -> ExchangeRecord:
    return ExchangeRecord(
        id=f"tp-{n:04d}",
        conversation_id=conversation,
        visitor_id=visitor,
        question=f"question {n}",
        reply=f"reply {n}",
        stage={"name": "decision", "confidence": 0.8, "evidence": [], "scores": {"decision": 0.8}},
        sources=[{"id": "pricing/plans", "title": "Plans", "url": "https://x.example/p", "snippet": "é ✓"}],
        suggestions=["What next?"],
        page={"url": "https://x.example/pricing", "title": "Pricing"},
        identity=None,
        retrieval_score=0.7,
        mode="offline",
        model="offline-composer",
        latency_ms=12,
    )


@pytest.fixture()
def sessions(tmp_path: Path):
    engine = make_engine(Settings(data_dir=tmp_path / "db"))
    yield make_sessionmaker(engine)
    engine.dispose()


def _rows(sessions) -> list[Touchpoint]:
    with sessions() as session:
        return list(session.scalars(select(Touchpoint).order_by(Touchpoint.conversation_id, Touchpoint.turn)))


def test_spool_replays_in_order_once_and_dead_letters_foreign_conversations(tmp_path: Path, sessions):
    spool = Spool(tmp_path / "spool")
    with sessions() as session:
        record_exchange(session=session, record=_record(1))  # written before the outage
    spool.append(_record(1))  # ... and spooled too (e.g. the commit's answer was lost): must not be duplicated
    spool.append(_record(2))
    spool.append(_record(3, visitor="visitor-b"))  # claims visitor-a's conversation
    spool.append(_record(4))
    spool.append(_record(5, conversation="conv-b", visitor="visitor-b"))
    assert spool.backlog() == 5

    report = spool.replay(sessions)
    assert (report.written, report.skipped, report.dead) == (3, 1, 1)
    rows = _rows(sessions)
    assert [(r.conversation_id, r.turn, r.id) for r in rows] == [
        ("conv-a", 1, "tp-0001"),
        ("conv-a", 2, "tp-0002"),
        ("conv-a", 3, "tp-0004"),
        ("conv-b", 1, "tp-0005"),
    ]
    assert rows[1].sources[0]["snippet"] == "é ✓" and rows[1].created_at.tzinfo is not None
    dead = [json.loads(line) for line in spool.dead_letter.read_text().splitlines()]
    assert [d["record"]["id"] for d in dead] == ["tp-0003"] and "another visitor" in dead[0]["reason"]
    assert not spool.has_work() and spool.backlog() == 0
    assert spool.replay(sessions).written == 0
    assert len(_rows(sessions)) == 4


def test_spool_keeps_records_while_the_database_is_down(tmp_path: Path, sessions):
    spool = Spool(tmp_path / "spool")
    for n in range(1, 4):
        spool.append(_record(n))
    down = make_sessionmaker(make_engine(Settings(data_dir=tmp_path / "gone"), upgrade=False))
    (tmp_path / "gone").rmdir()  # the database file's folder vanished: every connection fails
    with pytest.raises(Exception) as raised:
        spool.replay(down)
    assert "unable to open database" in str(raised.value)
    assert spool.backlog() == 3, "a failed replay keeps every record"

    spool.append(_record(4))
    # a new process (e.g. after a crash) finds the batch taken for replay and the new pending record
    fresh = Spool(tmp_path / "spool")
    assert fresh.backlog() == 4 and fresh.batches()
    assert fresh.replay(sessions).written == 4
    assert [r.turn for r in _rows(sessions)] == [1, 2, 3, 4]
    assert not fresh.has_work()


def test_a_bad_record_does_not_block_the_ones_after_it(tmp_path: Path, sessions):
    spool = Spool(tmp_path / "spool")
    spool.append(_record(1))
    with spool.pending.open("a") as handle:
        handle.write('{"id": "tp-9999", "truncated')  # a torn write: the process died mid-line
    spool.append(_record(2))
    report = spool.replay(sessions)
    assert (report.written, report.dead) == (2, 1)
    assert [r.id for r in _rows(sessions)] == ["tp-0001", "tp-0002"]
    assert "unreadable" in spool.dead_letter.read_text()


def test_spooled_feedback_is_checked_when_replayed(tmp_path: Path, sessions):
    spool = Spool(tmp_path / "spool")
    spool.append(_record(1))

    def feedback(n: int, about: str, visitor: str = "visitor-a") -> EventRecord:
        return EventRecord(f"fb-{n}", "conv-a", visitor, "feedback", {"rating": "down", "message_id": about}, about)

    spool.append(feedback(1, "tp-0001"))
    spool.append(feedback(2, "tp-0404"))  # not a reply of this conversation
    spool.append(feedback(3, "tp-0001", visitor="visitor-b"))  # someone else's conversation
    report = spool.replay(sessions)
    assert (report.written, report.dead) == (2, 2)
    rows = _rows(sessions)
    assert [(r.id, r.kind, r.turn, r.stage) for r in rows] == [
        ("tp-0001", "exchange", 1, "decision"),
        ("fb-1", "feedback", 2, "decision"),
    ]
    reasons = [json.loads(line)["reason"] for line in spool.dead_letter.read_text().splitlines()]
    assert "rated reply" in reasons[0] and "another visitor" in reasons[1]


# --- a real server on PostgreSQL behind a TCP proxy that can refuse connections -------------------------------


class Proxy:
    """Forwards 127.0.0.1:<port> to PostgreSQL; `down()` refuses new connections and cuts the open ones."""

    def __init__(self, target: tuple[str, int] = ("127.0.0.1", 5432)) -> None:
        self.target = target
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            sockets, self._open = self._open, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=3)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._open += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


@pytest.fixture()
def proxied_pg() -> Iterator[tuple[Proxy, str, str]]:
    """(proxy, URL through the proxy, direct URL) to a fresh PostgreSQL database."""
    direct, drop = create_pg_database()
    proxy = Proxy()
    proxy.up()
    through = direct.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    yield proxy, through, direct
    proxy.down()
    drop()


def _stored(direct: str) -> dict[str, int]:
    with psycopg.connect(direct, connect_timeout=3) as con:
        return dict(con.execute("SELECT id, count(*) FROM touchpoints GROUP BY id").fetchall())


def _wait_for(direct: str, ids: list[str], seconds: float = 20) -> dict[str, int]:
    deadline = time.monotonic() + seconds
    while True:
        stored = _stored(direct)
        if all(i in stored for i in ids) or time.monotonic() > deadline:
            return stored
        time.sleep(0.25)


def _turns(server: Server, earlier: dict) -> list[dict]:
    """Six turns while the database is down: new and continuing conversations, plain and streamed."""
    done = []
    for n in range(2):
        fresh = httpx.post(
            f"{server.url}/v1/chat", json={"message": f"How much does the pro plan cost? ({n})"}, timeout=30
        )
        assert fresh.status_code == 200, fresh.text
        done.append(fresh.json())
    same = {"conversation_id": done[0]["conversation_id"], "visitor_id": done[0]["visitor_id"]}
    again = httpx.post(f"{server.url}/v1/chat", json={"message": "And is there a trial?", **same}, timeout=30)
    assert again.status_code == 200, again.text
    done.append(again.json())
    before = {"conversation_id": earlier["conversation_id"], "visitor_id": earlier["visitor_id"]}
    for body in ({"message": "Can I pay yearly?"}, {"message": "What about support?", **before}):
        events = stream_chat(server.url, body)
        names = [name for name, _ in events]
        assert names[-1] == "done" and "error" not in names, events
        done.append(events[-1][1])
    for payload in done:
        assert payload["reply"].strip() and payload["message_id"]
    return done


def test_database_down_loses_no_touchpoint(proxied_pg, make_data_dir):
    proxy, through, direct = proxied_pg
    server = Server(make_data_dir(), JOURNEY_DATABASE_URL=through)
    try:
        earlier = httpx.post(f"{server.url}/v1/chat", json={"message": "What is Lumio?"}, timeout=30).json()
        proxy.down()
        started = time.monotonic()
        done = _turns(server, earlier)
        assert time.monotonic() - started < 30, "no turn waits long on the dead database"
        ids = [d["message_id"] for d in done]
        continued = httpx.post(  # an OpenAI-style client continuing by `user` + history: answered, not refused
            f"{server.url}/v1/chat/completions",
            json={
                "model": "journey-guide",
                "user": earlier["visitor_id"],
                "messages": [
                    {"role": "user", "content": "What is Lumio?"},
                    {"role": "assistant", "content": earlier["reply"]},
                    {"role": "user", "content": "Do you have a mobile app?"},
                ],
            },
            timeout=30,
        )
        assert continued.status_code == 200, continued.text
        extra_id = continued.json()["journey"]["message_id"]
        assert not set(ids + [extra_id]) & set(_stored(direct)), "nothing reached the database while it was down"
        for turn, rating in ((earlier, "up"), (done[0], "down")):  # on a stored reply and on a spooled one
            feedback = httpx.post(
                f"{server.url}/v1/conversations/{turn['conversation_id']}/feedback",
                json={"visitor_id": turn["visitor_id"], "message_id": turn["message_id"], "rating": rating},
                timeout=30,
            )
            assert feedback.status_code == 201, feedback.text
        transcript = httpx.get(
            f"{server.url}/v1/conversations/{earlier['conversation_id']}",
            params={"visitor_id": earlier["visitor_id"]},
            timeout=30,
        )
        assert transcript.status_code == 503 and transcript.json()["error"] == "database_unavailable", transcript.text
        deadline = time.monotonic() + 5  # the gauge is refreshed every second
        while "journey_spool_backlog 8.0" not in (metrics := httpx.get(f"{server.url}/metrics", timeout=30).text):
            assert time.monotonic() < deadline, [m for m in metrics.splitlines() if "spool" in m]
            time.sleep(0.2)

        proxy.up()
        stored = _wait_for(direct, ids)
        assert {i: stored.get(i) for i in ids} == {i: 1 for i in ids}, "every touchpoint written exactly once"
        assert _wait_for(direct, [extra_id]).get(extra_id) == 1, "the OpenAI-style turn was written too"
        transcript = httpx.get(
            f"{server.url}/v1/conversations/{earlier['conversation_id']}",
            params={"visitor_id": earlier["visitor_id"]},
            timeout=30,
        ).json()
        assert [t["message_id"] for t in transcript["turns"]] == [earlier["message_id"], ids[4]]
        assert [t["feedback"] for t in transcript["turns"]] == ["up", None], "the spooled feedback was written"
        first = httpx.get(
            f"{server.url}/v1/conversations/{done[0]['conversation_id']}",
            params={"visitor_id": done[0]["visitor_id"]},
            timeout=30,
        ).json()
        assert [t["message_id"] for t in first["turns"]] == [ids[0], ids[2]], "spooled turns keep their order"
        assert first["turns"][0]["feedback"] == "down"
        assert not list((server.data_dir / "spool").glob("*.jsonl")), "the spool is empty after replay"
    finally:
        server.stop()
    assert '"status": 500' not in server.log.read_text()


def test_spooled_touchpoints_survive_kill_9(proxied_pg, make_data_dir):
    """Spooled turns outlive a kill -9; the restarted server starts and answers with the database still down."""
    proxy, through, direct = proxied_pg
    data_dir = make_data_dir()
    server = Server(data_dir, JOURNEY_DATABASE_URL=through)
    try:
        earlier = httpx.post(f"{server.url}/v1/chat", json={"message": "What is Lumio?"}, timeout=30).json()
        proxy.down()
        ids = [d["message_id"] for d in _turns(server, earlier)]
    finally:
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(timeout=15)
        server._log_file.close()
    assert not set(ids) & set(_stored(direct))
    restarted = Server(data_dir, JOURNEY_DATABASE_URL=through)  # starts while the database is still down
    try:
        late = httpx.post(f"{restarted.url}/v1/chat", json={"message": "Do you have a free trial?"}, timeout=30)
        assert late.status_code == 200, late.text
        ids.append(late.json()["message_id"])
        proxy.up()
        stored = _wait_for(direct, ids)
        assert {i: stored.get(i) for i in ids} == {i: 1 for i in ids}, "the crashed process's spool was replayed"
    finally:
        restarted.stop()
