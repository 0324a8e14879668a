"""Writing new jobs: each with its first event and its audit entry, in the caller's
transaction.

On PostgreSQL one statement does all three (data-modifying CTEs), executed once per
job in a pipeline, so a batch of submissions costs one round trip and one statement
for the driver to prepare, whatever its size. Other databases (SQLite) get three plain
statements. Types go through the columns' own SQLAlchemy types either way (UTC
timestamps, JSON).
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Insert, Select, Table, bindparam, insert, literal_column, null, select, text
from sqlalchemy import cast as sql_cast
from sqlalchemy.orm import Session
from sqlalchemy.types import String

from gigafactory.service.audit.models import AuditEntry
from gigafactory.service.jobs.models import Job, JobEvent

_JOBS = cast(Table, Job.__table__)
_EVENTS = cast(Table, JobEvent.__table__)
_AUDIT = cast(Table, AuditEntry.__table__)

#: The values a new job row is written with (see ``service._job_values``).
JOB_KEYS = ("project_id", "user_id", "name", "gpus", "accelerator", "topology", "priority",
            "walltime", "runtime_estimate", "checkpointable", "checkpoint_interval",
            "grace_period", "command", "env", "workdir", "state", "state_reason", "hold_kind",
            "submitted_at", "queued_at", "pending_reason", "idempotency_key", "request_hash",
            "gpu_seconds", "restart_count", "active")

_EVENT_COLS = ["job_id", "at", "from_state", "to_state", "reason", "actor"]
_AUDIT_COLS = ["at", "actor", "action", "target", "detail"]


def _pg_statement(with_ids: bool) -> Insert | Select[tuple[int]]:
    """``WITH j AS (INSERT jobs … RETURNING), e AS (INSERT job_events … FROM j)`` and the
    audit entry; with explicit ids it is an INSERT (for executemany), without it is a
    SELECT of the new id."""
    keys = JOB_KEYS + (("id",) if with_ids else ())
    j = (insert(_JOBS)
         .values({k: bindparam(k, type_=_JOBS.c[k].type) for k in keys})
         .returning(_JOBS.c.id, _JOBS.c.submitted_at, _JOBS.c.state, _JOBS.c.state_reason)
         .cte("j"))
    actor = bindparam("actor", type_=_EVENTS.c.actor.type)
    e = insert(_EVENTS).from_select(
        _EVENT_COLS, select(j.c.id, j.c.submitted_at, null(), j.c.state, j.c.state_reason, actor)
    ).cte("e")
    audit = insert(_AUDIT).from_select(_AUDIT_COLS, select(
        j.c.submitted_at, actor, literal_column("'job.submit'"),
        literal_column("'job:'") + sql_cast(j.c.id, String),
        bindparam("detail", type_=_AUDIT.c.detail.type),
    ))
    if with_ids:
        return audit.add_cte(e)
    return select(j.c.id).add_cte(e).add_cte(audit.cte("a"))


_PG_ONE = _pg_statement(with_ids=False)
_PG_MANY = _pg_statement(with_ids=True)
_NEXT_IDS = text("SELECT nextval(pg_get_serial_sequence('jobs', 'id')) FROM generate_series(1, :n)")
_INSERT_RETURNING = insert(_JOBS).returning(_JOBS.c.id, sort_by_parameter_order=True)
_INSERT_EVENTS = insert(_EVENTS)
_INSERT_AUDIT = insert(_AUDIT)


def insert_jobs(db: Session, rows: list[tuple[dict[str, Any], str, dict[str, Any]]]) -> list[int]:
    """Write ``(job values, actor, audit detail)`` rows; their new ids, in order."""
    if not rows:
        return []
    if db.get_bind().dialect.name == "postgresql":
        params = [{**v, "actor": actor, "detail": detail} for v, actor, detail in rows]
        if len(params) == 1:
            return [db.execute(_PG_ONE, params[0]).scalar_one()]
        ids = sorted(db.execute(_NEXT_IDS, {"n": len(params)}).scalars().all())
        rows_with_ids = [{**p, "id": jid} for p, jid in zip(params, ids, strict=True)]
        # Ids follow arrival; rows are inserted in (user, Idempotency-Key) order, the
        # order of the unique index, so two processes writing overlapping retried keys
        # wait for each other instead of deadlocking.
        rows_with_ids.sort(key=lambda r: (r["user_id"], r["idempotency_key"] or ""))
        db.execute(_PG_MANY, rows_with_ids)
        return ids
    ids = list(db.execute(_INSERT_RETURNING, [v for v, _, _ in rows]).scalars().all())
    db.execute(_INSERT_EVENTS, [
        {"job_id": jid, "at": v["submitted_at"], "from_state": None, "to_state": v["state"],
         "reason": v["state_reason"], "actor": actor}
        for (v, actor, _), jid in zip(rows, ids, strict=True)
    ])
    db.execute(_INSERT_AUDIT, [
        {"at": v["submitted_at"], "actor": actor, "action": "job.submit", "target": f"job:{jid}",
         "detail": detail}
        for (v, actor, detail), jid in zip(rows, ids, strict=True)
    ])
    return ids
