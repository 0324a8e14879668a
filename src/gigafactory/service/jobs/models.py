"""The ``jobs`` and ``job_events`` tables.

A job row holds what the user asked for, where it is in its lifecycle, and what the
scheduler last said about it (``estimated_start``, ``pending_reason``). ``active`` is
true while an executor holds GPUs for the job, whatever its state says: a cancelled
job keeps its GPUs until the executor confirms that it stopped.

Indexes serve keyset pagination (``id`` descending) under the common filters.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from gigafactory.service.db import Base, UTCDateTime, utcnow

#: An auto-incrementing 64-bit key that is SQLite's rowid there.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("user_id", "idempotency_key", name="uq_jobs_idempotency"),
        Index("ix_jobs_project_id_id", "project_id", "id"),
        Index("ix_jobs_state_id", "state", "id"),
        Index("ix_jobs_user_id_id", "user_id", "id"),
        Index("ix_jobs_active", "active"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="RESTRICT"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    name: Mapped[str] = mapped_column(String(200), default="")
    gpus: Mapped[int] = mapped_column(Integer)
    accelerator: Mapped[str | None] = mapped_column(String(64))
    topology: Mapped[str] = mapped_column(String(16), default="any")
    priority: Mapped[str] = mapped_column(String(16), default="normal")
    walltime: Mapped[float] = mapped_column(Float)
    runtime_estimate: Mapped[float | None] = mapped_column(Float)
    checkpointable: Mapped[bool] = mapped_column(Boolean, default=False)
    checkpoint_interval: Mapped[float | None] = mapped_column(Float)
    grace_period: Mapped[float] = mapped_column(Float, default=60.0)
    command: Mapped[list[str]] = mapped_column(JSON)
    env: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    workdir: Mapped[str | None] = mapped_column(String(1024))

    state: Mapped[str] = mapped_column(String(16))
    state_reason: Mapped[str] = mapped_column(Text, default="")
    hold_kind: Mapped[str | None] = mapped_column(String(16))
    submitted_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    queued_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    estimated_start: Mapped[datetime | None] = mapped_column(UTCDateTime())
    pending_reason: Mapped[str | None] = mapped_column(Text)

    active: Mapped[bool] = mapped_column(Boolean, default=False)
    placement: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    stop_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    preempted_for: Mapped[int | None] = mapped_column(BigId)
    restart_count: Mapped[int] = mapped_column(Integer, default=0)
    checkpoint_dir: Mapped[str | None] = mapped_column(String(1024))
    last_checkpoint_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    exit_code: Mapped[int | None] = mapped_column(Integer)
    gpu_seconds: Mapped[float] = mapped_column(Float, default=0.0)

    idempotency_key: Mapped[str | None] = mapped_column(String(128))
    request_hash: Mapped[str | None] = mapped_column(String(64))

    # Lease on background work (launch/stop): who claimed it, with which token, until when.
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_token: Mapped[str | None] = mapped_column(String(32))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class JobEvent(Base):
    """One state transition of one job, with its reason and who caused it."""

    __tablename__ = "job_events"
    __table_args__ = (Index("ix_job_events_job_id_id", "job_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    from_state: Mapped[str | None] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, default="")
    actor: Mapped[str] = mapped_column(String(64), default="")
