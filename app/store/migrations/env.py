"""Alembic environment: runs on the connection app.store.schema passes in (SQLite in batch mode)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from app.store.models import Base, UTCDateTime
from app.store.schema import load_models

load_models()


def _render_item(kind: str, obj, _context):
    if kind == "type" and isinstance(obj, UTCDateTime):  # revisions need no import of the app's types
        return "sa.DateTime(timezone=True)"
    return False


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        render_item=_render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:  # the alembic command line: -x url=...
    from app.config import Settings

    url = context.get_x_argument(as_dictionary=True).get("url") or Settings().sqlalchemy_url
    with create_engine(url).connect() as own:
        _run(own)
        own.commit()
