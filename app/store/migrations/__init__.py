"""Alembic migrations of the touchpoint database (run by app.store.schema.upgrade at start)."""
