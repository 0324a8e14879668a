"""Usage records, the guarantee ledger and the scheduler's persisted state.

* ``usage_records``: one row per finished run of a job (GPU-seconds charged).
* ``guarantee_ledger``: per partner and hour, GPU-seconds owed, delivered and lent,
  accumulated by the scheduler loop every cycle.
* ``scheduler_state``: small key/value rows the loop keeps between cycles and leaders
  (decayed usage per project, time of the last cycle).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from gigafactory.service.db import Base, UTCDateTime, utcnow
from gigafactory.service.jobs.models import BigId


class UsageRecord(Base):
    __tablename__ = "usage_records"
    __table_args__ = (
        Index("ix_usage_records_project_ended", "project_id", "ended_at"),
        Index("ix_usage_records_partner_ended", "partner_id", "ended_at"),
        Index("ix_usage_records_job", "job_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    project_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="RESTRICT"))
    partner_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="RESTRICT"))
    gpus: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime] = mapped_column(UTCDateTime())
    gpu_seconds: Mapped[float] = mapped_column(Float)
    outcome: Mapped[str] = mapped_column(String(16))


class GuaranteeLedger(Base):
    __tablename__ = "guarantee_ledger"
    __table_args__ = (UniqueConstraint("partner_id", "hour", name="uq_guarantee_ledger_hour"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    partner_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    hour: Mapped[datetime] = mapped_column(UTCDateTime())
    owed_gpu_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    delivered_gpu_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    lent_gpu_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    used_gpu_seconds: Mapped[float] = mapped_column(Float, default=0.0)


class SchedulerState(Base):
    __tablename__ = "scheduler_state"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
