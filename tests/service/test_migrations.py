"""The shipped migrations create exactly the models' schema, and downgrade cleanly."""

from __future__ import annotations

from sqlalchemy import inspect

from gigafactory.service import migrate
from gigafactory.service.db import make_engine


def test_upgrade_matches_models_then_downgrade(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        assert migrate.current(engine) == "0001"
        assert migrate.model_drift(engine) == []
        migrate.downgrade(engine, "base")
        tables = set(inspect(engine).get_table_names()) - {"alembic_version"}
        assert tables == set()
        migrate.upgrade(engine)
        assert migrate.current(engine) == "0001"
        assert "jobs" in inspect(engine).get_table_names()
    finally:
        engine.dispose()
