"""The ``tenants`` table: every node of the share tree (partner, programme or project).

One table for all three kinds keeps the tree a tree: ``parent_id`` points one level up
(programme → partner, project → programme). Names are unique facility-wide because the
scheduling core addresses tenants by name.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Float, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from gigafactory.service.db import Base, UTCDateTime, utcnow


class Tenant(Base):
    __tablename__ = "tenants"
    __table_args__ = {"sqlite_autoincrement": True}  # noqa: RUF012 - SQLAlchemy reads it

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("tenants.id", ondelete="RESTRICT"), index=True
    )
    title: Mapped[str] = mapped_column(String(200), default="")
    guarantee: Mapped[int] = mapped_column(Integer, default=0)
    borrow_limit: Mapped[int | None] = mapped_column(Integer)
    lend_limit: Mapped[int | None] = mapped_column(Integer)
    weight: Mapped[float] = mapped_column(Float, default=1.0)
    tenant_class: Mapped[str | None] = mapped_column(String(32))
    # Project budget in GPU-hours; NULL = unlimited. ``budget_used`` counts finished runs.
    budget_gpu_hours: Mapped[float | None] = mapped_column(Float)
    budget_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    budget_used_gpu_hours: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
