"""Database faults lose no touchpoint: exchanges wait in an fsync'd spool and are written, once, when it is back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from app.config import Settings
from app.store.db import make_engine, make_sessionmaker
from app.store.models import Touchpoint
from app.store.service import ExchangeRecord, record_exchange
from app.store.spool import Spool


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
