"""Alembic environment: runs against the engine handed over by gigafactory.service.migrate."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from gigafactory.service.db import Base, import_models

import_models()
config = context.config
engine = config.attributes.get("engine") or create_engine(config.get_main_option("sqlalchemy.url") or "")

with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=True,  # SQLite cannot ALTER most things; batch mode copies tables
        compare_type=True,
    )
    context.run_migrations()
