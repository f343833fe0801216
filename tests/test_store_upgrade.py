"""A database created before a nullable column existed gets the column when the service starts."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy import inspect

from app.config import Settings
from app.store.db import add_missing_columns, make_engine, make_sessionmaker
from app.store.models import Conversation
from app.store.service import record_event


def test_touchpoints_without_data_column_are_upgraded(tmp_path: Path):
    settings = Settings(data_dir=tmp_path)
    make_engine(settings).dispose()
    con = sqlite3.connect(tmp_path / "journey.db")
    con.execute("ALTER TABLE touchpoints DROP COLUMN data")
    con.commit()
    con.close()

    engine = make_engine(settings)
    assert "data" in {c["name"] for c in inspect(engine).get_columns("touchpoints")}
    assert add_missing_columns(engine) == [], "a second start adds nothing"
    with make_sessionmaker(engine)() as session:
        conversation = Conversation(id="conv-0001", visitor_id="visitor-01", turns=0)
        session.add(conversation)
        session.flush()
        touchpoint = record_event(
            session=session, conversation=conversation, id="tp-000001", kind="feedback", data={"rating": "up"}
        )
        assert touchpoint.turn == 1 and touchpoint.data == {"rating": "up"}
    engine.dispose()
