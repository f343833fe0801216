"""Databases made by older versions are brought under Alembic when the service starts; upgrades run once at a time."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import base_env, create_pg_database, run_cli
from sqlalchemy import create_engine, inspect, text

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


def test_conversations_from_before_the_inbox_become_open_and_unassigned(database: dict[str, str]):
    """A database at revision 0002 with a conversation in it gets status and assignee (migration 0003)."""
    engine = make_engine(Settings(_env_file=None, **_settings_from(database)), upgrade=False)
    schema.upgrade(engine, "0002")
    with engine.begin() as connection:
        assert "status" not in {c["name"] for c in inspect(connection).get_columns("conversations")}
        connection.execute(
            text(
                "INSERT INTO conversations (id, visitor_id, created_at, updated_at, turns) "
                "VALUES ('c1', 'v1', '2026-01-01 00:00:00+00', '2026-01-01 00:00:00+00', 0)"
            )
        )
    assert schema.upgrade(engine) == schema.head()
    with make_sessionmaker(engine)() as session:
        conversation = session.get(Conversation, "c1")
        assert (conversation.status, conversation.status_until, conversation.assignee) == ("open", None, None)
    indexes = {i["name"] for i in inspect(engine).get_indexes("conversations")}
    assert {"ix_conversations_status", "ix_conversations_assignee"} <= indexes
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path: Path) -> Iterator[dict[str, str]]:
    """The environment of a process using a new SQLite file or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield base_env(tmp_path)
        return
    url, drop = create_pg_database()
    yield base_env(tmp_path, JOURNEY_DATABASE_URL=url)
    drop()


def test_workers_starting_together_upgrade_once(database: dict[str, str]):
    """Four processes make the engine at once on a new database: all succeed, one alembic_version row."""
    code = "from app.config import Settings\nfrom app.store.db import make_engine\nmake_engine(Settings()).dispose()"
    procs = [
        subprocess.Popen([sys.executable, "-c", code], env=database, stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    engine = make_engine(Settings(_env_file=None, **_settings_from(database)), upgrade=False)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT version_num FROM alembic_version")).all() == [(schema.head(),)]
    engine.dispose()


def test_db_commands(database: dict[str, str]):
    before = run_cli("db", "current", env=database)
    assert before.returncode == 0, before.stderr
    assert "current: none" in before.stdout and f"head: {schema.head()}" in before.stdout
    upgraded = run_cli("db", "upgrade", env=database)
    assert upgraded.returncode == 0 and f"database at revision {schema.head()}" in upgraded.stdout, upgraded.stderr
    after = run_cli("db", "current", env=database)
    assert f"current: {schema.head()}" in after.stdout


def _settings_from(env: dict[str, str]) -> dict:
    settings = {"data_dir": Path(env["JOURNEY_DATA_DIR"])}
    if "JOURNEY_DATABASE_URL" in env:
        settings["database_url"] = env["JOURNEY_DATABASE_URL"]
    return settings
