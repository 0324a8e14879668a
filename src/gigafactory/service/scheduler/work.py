"""Executor-facing work with leases (DESIGN.md §10, after dstack).

Slow calls (launching processes, signalling them) never run inside a transaction:

1. **claim**: in a short transaction, select due rows ``FOR UPDATE SKIP LOCKED`` and
   stamp them with a lease (owner, random token, expiry);
2. **work**: call the executor, outside any transaction;
3. **apply**: in a new transaction, re-read the row ``FOR UPDATE`` and apply the
   result only if our lease token is still on it.

A crashed worker's leases simply expire, and someone else picks the rows up.
Ended runs are charged here too: a usage record, the job's total, the project budget.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Select, or_, select
from sqlalchemy.orm import Session, sessionmaker

from gigafactory.service.jobs.lifecycle import StaleJob, transition
from gigafactory.service.jobs.models import Job
from gigafactory.service.tenants.models import Tenant
from gigafactory.service.usage.models import UsageRecord

log = logging.getLogger("gigafactory.scheduler")
ACTOR = "scheduler"


def claim(
    sessions: sessionmaker[Session],
    query: Select[Any],
    owner: str,
    ttl: float,
    now: datetime,
    limit: int = 256,
) -> list[tuple[int, str]]:
    """Lease up to ``limit`` rows of ``query`` whose lease is free or expired."""
    q = (
        query.where(or_(Job.lease_expires_at.is_(None), Job.lease_expires_at < now))
        .order_by(Job.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    out: list[tuple[int, str]] = []
    with sessions() as db:
        for row in db.scalars(q):
            job = cast(Job, row)
            token = secrets.token_hex(8)
            job.lease_owner, job.lease_token = owner, token
            job.lease_expires_at = now + timedelta(seconds=ttl)
            out.append((job.id, token))
        db.commit()
    return out


def apply_leased(
    sessions: sessionmaker[Session],
    job_id: int,
    token: str,
    fn: Callable[[Session, Job], Any],
) -> bool:
    """Run ``fn(db, job)`` and release the lease, only if ``token`` still holds it."""
    with sessions() as db:
        job = db.scalar(select(Job).where(Job.id == job_id).with_for_update())
        if job is None or job.lease_token != token:
            db.rollback()
            log.warning("lease on job %s was lost; result dropped", job_id)
            return False
        try:
            fn(db, job)
        except StaleJob:
            db.rollback()
            return False
        job.lease_owner = job.lease_token = None
        job.lease_expires_at = None
        db.commit()
        return True


def partner_of(db: Session, project_id: int) -> int:
    t = db.get(Tenant, project_id)
    while t is not None and t.parent_id is not None:
        t = db.get(Tenant, t.parent_id)
    assert t is not None
    return t.id


def close_run(db: Session, job: Job, now: datetime, outcome: str) -> None:
    """The executor no longer holds GPUs for ``job``: charge the run and free it."""
    if job.active and job.started_at is not None:
        secs = job.gpus * max(0.0, (now - job.started_at).total_seconds())
        db.add(UsageRecord(job_id=job.id, project_id=job.project_id,
                           partner_id=partner_of(db, job.project_id), gpus=job.gpus,
                           started_at=job.started_at, ended_at=now, gpu_seconds=secs,
                           outcome=outcome))
        job.gpu_seconds = (job.gpu_seconds or 0.0) + secs
        project = db.get(Tenant, job.project_id)
        if project is not None:
            project.budget_used_gpu_hours += secs / 3600.0
    job.active = False
    job.stop_requested_at = None
    job.preempted_for = None
    job.lease_owner = job.lease_token = None
    job.lease_expires_at = None


def requeue_fields(job: Job, now: datetime) -> dict[str, Any]:
    return {"restart_count": job.restart_count + 1, "queued_at": now, "placement": None,
            "ended_at": None, "pending_reason": "waiting for the next scheduling cycle",
            "estimated_start": None}


def end_job(db: Session, job: Job, outcome: str, exit_code: int | None, detail: str,
            now: datetime) -> None:
    """Apply an executor's terminal report (completed, failed, preempted, cancelled,
    lost) to an active job; repeated reports for an inactive job are ignored."""
    if not job.active:
        return
    close_run(db, job, now, outcome)
    job.exit_code = exit_code
    state = job.state
    what = f"executor: {detail}" if detail else f"executor reports {outcome}"
    if state in ("cancelled", "failed", "completed"):  # we asked it to stop; already final
        job.ended_at = job.ended_at or now
        return
    if outcome == "completed":
        transition(db, job, "completed", what, ACTOR, now, ended_at=now)
    elif outcome == "failed" and state != "preempting":
        transition(db, job, "failed", what, ACTOR, now, ended_at=now)
    elif outcome == "cancelled" and state != "preempting":
        transition(db, job, "cancelled", what, ACTOR, now, ended_at=now)
    elif outcome == "lost" and state != "preempting" and not job.checkpointable:
        transition(db, job, "failed", f"{what}; not checkpointable, so not requeued", ACTOR,
                   now, ended_at=now)
    else:  # preempted, or stopped while preempting, or lost but resumable: queue it again
        if state != "preempting":
            transition(db, job, "preempting", what, ACTOR, now)
        transition(db, job, "requeued",
                   f"stopped ({detail or outcome}); will resume from its checkpoint "
                   f"(restart {job.restart_count + 1})", ACTOR, now, **requeue_fields(job, now))
