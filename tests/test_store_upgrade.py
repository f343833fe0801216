"""Databases made by older versions are brought under Alembic when the service starts; upgrades run once at a time."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

from sqlalchemy import create_engine, inspect

from app.config import Settings
from app.store import schema
from app.store.db import make_engine, make_sessionmaker
from app.store.models import Base, Conversation
from app.store.service import record_event


def _legacy_database(path: Path, *, drop: tuple[str, ...] = ()) -> None:
    """A database as the pre-Alembic versions made it: create_all, no alembic_version, maybe fewer columns."""
    schema.load_models()
    engine = create_engine(f"sqlite:///{path}")
    Base.metadata.create_all(engine)
    engine.dispose()
    con = sqlite3.connect(path)
    for column in drop:
        table, name = column.split(".")
        con.execute(f"ALTER TABLE {table} DROP COLUMN {name}")
    con.commit()
    con.close()


def test_touchpoints_without_data_column_are_upgraded(tmp_path: Path):
    _legacy_database(tmp_path / "journey.db", drop=("touchpoints.data",))
    settings = Settings(data_dir=tmp_path)

    engine = make_engine(settings)
    assert "data" in {c["name"] for c in inspect(engine).get_columns("touchpoints")}
    assert schema.current(engine) == schema.head(), "the legacy database is stamped at the newest revision"
    engine.dispose()
    engine = make_engine(settings)  # a second start finds nothing to do
    assert schema.current(engine) == schema.head()
    with make_sessionmaker(engine)() as session:
        conversation = Conversation(id="conv-0001", visitor_id="visitor-01", turns=0)
        session.add(conversation)
        session.flush()
        touchpoint = record_event(
            session=session, conversation=conversation, id="tp-000001", kind="feedback", data={"rating": "up"}
        )
        assert touchpoint.turn == 1 and touchpoint.data == {"rating": "up"}
    engine.dispose()


def test_legacy_database_missing_a_table_keeps_its_rows(tmp_path: Path):
    path = tmp_path / "journey.db"
    _legacy_database(path)
    con = sqlite3.connect(path)
    con.execute("DROP TABLE webhook_outbox")
    con.execute(
        "INSERT INTO conversations (id, visitor_id, created_at, updated_at, turns) VALUES ('c1', 'v1', "
        "'2026-01-01 00:00:00', '2026-01-01 00:00:00', 0)"
    )
    con.commit()
    con.close()

    engine = make_engine(Settings(data_dir=tmp_path))
    tables = set(inspect(engine).get_table_names())
    assert {"webhook_outbox", "alembic_version", "touchpoints"} <= tables
    with make_sessionmaker(engine)() as session:
        assert session.get(Conversation, "c1").visitor_id == "v1"
    engine.dispose()


def test_workers_starting_together_upgrade_once(tmp_path: Path):
    """Four processes make the engine at once on a new SQLite file: all succeed, one alembic_version row."""
    code = textwrap.dedent(
        f"""
        from pathlib import Path
        from app.config import Settings
        from app.store.db import make_engine
        make_engine(Settings(data_dir=Path({str(tmp_path)!r}))).dispose()
        """
    )
    procs = [subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True) for _ in range(4)]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    con = sqlite3.connect(tmp_path / "journey.db")
    assert con.execute("SELECT version_num FROM alembic_version").fetchall() == [(schema.head(),)]
    con.close()
