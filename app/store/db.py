"""Database engine and sessions: SQLite in WAL mode by default, PostgreSQL (psycopg 3) when configured.

The schema is managed by Alembic (app/store/schema.py, migrations in app/store/migrations): every engine made here
is upgraded to the newest revision first, one process at a time.
"""

from __future__ import annotations

import logging

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import sessionmaker

from app.config import Settings
from app.store import schema
from app.store.spool import is_database_down

CONNECT_TIMEOUT_SECONDS = 3
log = logging.getLogger(__name__)


def make_engine(settings: Settings, *, upgrade: bool = True) -> Engine:
    """Create the engine for the configured database and bring its schema to the newest revision."""
    url = settings.sqlalchemy_url
    if url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()
    else:
        connect_args = {}
        if url.startswith("postgresql"):  # a down database fails fast; dates are grouped by UTC day
            connect_args = {"connect_timeout": CONNECT_TIMEOUT_SECONDS, "options": "-c timezone=UTC"}
        engine = create_engine(url, pool_pre_ping=True, connect_args=connect_args)
        if engine.dialect.name == "postgresql":
            event.listen(engine, "before_cursor_execute", _without_nul, retval=True)
    if upgrade:
        try:
            schema.upgrade(engine)
        except Exception as error:
            if not is_database_down(error) or engine.dialect.name == "sqlite":  # a SQLite file is not "down"
                raise
            # start anyway: turns go to the spool, and its replay loop upgrades first (app/store/spool.py)
            log.warning("database unreachable at start, schema upgrade deferred: %s", str(error).splitlines()[0][:200])
            schema.PENDING.add(engine)
    return engine


def _clean(value):
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd") if "\x00" in value else value
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_clean(v) for v in value)
    return value


def _without_nul(_conn, _cursor, statement, parameters, _context, _executemany):
    """PostgreSQL text cannot hold NUL: a visitor's "\\x00" is stored as U+FFFD instead of failing the insert."""
    return statement, _clean(parameters)


def make_sessionmaker(engine: Engine) -> sessionmaker:
    """Sessions that keep loaded objects usable after commit."""
    return sessionmaker(engine, expire_on_commit=False)
