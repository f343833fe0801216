"""The database schema under Alembic: every table module loaded, `upgrade head` run once at a time, revisions.

Add a revision after changing a model (any `app/<package>/models.py` is picked up, plus app/kb/jobs.py):

    JOURNEY_DATABASE_URL=... journey db revision -m "add live sessions"   # autogenerate against an upgraded db

then review the file written to app/store/migrations/versions/ (use op.batch_alter_table for SQLite changes).
tests/test_store_backends.py fails while a model has no migration (autogenerate finds differences).
"""

from __future__ import annotations

import fcntl
import importlib
import importlib.util
import pkgutil
import weakref
import zlib
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text

MIGRATIONS = Path(__file__).parent / "migrations"
LOCK_KEY = zlib.crc32(b"journey-guide-migrations")  # the pg_advisory_lock key every worker agrees on
EXTRA_MODEL_MODULES = ("app.store.models", "app.kb.jobs")
PENDING: weakref.WeakSet[Engine] = weakref.WeakSet()  # engines that started with the database down


def load_models() -> None:
    """Import every module that defines tables, so Base.metadata holds them all."""
    import app

    for module in EXTRA_MODEL_MODULES:
        importlib.import_module(module)
    for info in pkgutil.iter_modules(app.__path__):
        name = f"app.{info.name}.models"
        if info.ispkg and importlib.util.find_spec(name) is not None:
            importlib.import_module(name)


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config for the packaged migrations, bound to `connection` when given."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("path_separator", "os")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head() -> str:
    """The newest revision shipped."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current(engine: Engine) -> str | None:
    """The revision the database is at (None: not under Alembic yet)."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


@contextmanager
def _sqlite_lock(engine: Engine):
    database = engine.url.database
    if not database or database == ":memory:":
        yield
        return
    with open(f"{database}.migrate-lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def upgrade_pending(engine: Engine) -> None:
    """Upgrade an engine that started with the database down (raises while it still is)."""
    if engine in PENDING:
        upgrade(engine)
        PENDING.discard(engine)


def upgrade(engine: Engine, revision: str = "head") -> str | None:
    """Bring the database to `revision`, one process at a time; return the revision it is at.

    A database made before Alembic (tables, no alembic_version) runs the baseline too: it creates only the tables
    that are missing and adds missing columns and indexes to the others.
    """
    load_models()
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": LOCK_KEY})
            connection.commit()
            try:
                command.upgrade(alembic_config(connection), revision)
                connection.commit()
                return MigrationContext.configure(connection).get_current_revision()
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": LOCK_KEY})
                connection.commit()
    with _sqlite_lock(engine), engine.connect() as connection:
        command.upgrade(alembic_config(connection), revision)
        connection.commit()
        return MigrationContext.configure(connection).get_current_revision()


def revision(engine: Engine, message: str) -> str:
    """Autogenerate a revision from the difference between the models and the (upgraded) database."""
    load_models()
    number = head()
    rev_id = f"{int(number) + 1:04d}" if number and number.isdigit() else None
    with engine.connect() as connection:
        script = command.revision(alembic_config(connection), message=message, autogenerate=True, rev_id=rev_id)
    return script.path if script is not None and not isinstance(script, list) else ""
