"""Jobs: submit (idempotent, budget-aware), list (keyset), show, and user actions.

Visibility: a caller sees a job when it may read the job's project; anything else is a
404, so ids of other projects' jobs reveal nothing. Acting on a visible job needs
``manage-any`` on the project, or ``manage-own`` and being the job's submitter (403).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from gigafactory.core.facility import Facility
from gigafactory.core.jobs import JobState
from gigafactory.service.audit.service import record
from gigafactory.service.auth.access import (
    Principal,
    project_scope,
    tenant_chain,
)
from gigafactory.service.auth.models import User
from gigafactory.service.auth.roles import Cap
from gigafactory.service.errors import (
    BudgetExhausted,
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    ServiceError,
)
from gigafactory.service.jobs import store
from gigafactory.service.jobs.lifecycle import transition
from gigafactory.service.jobs.models import Job, JobEvent
from gigafactory.service.jobs.schemas import JobDetail, JobEventOut, JobOut, JobSubmit
from gigafactory.service.jobs.states import ACTIVE
from gigafactory.service.settings import Settings
from gigafactory.service.tenants.models import Tenant
from gigafactory.service.tenants.schemas import BudgetOut
from gigafactory.service.tenants.service import budget_status

#: Variables the executor sets itself (DESIGN.md §4); inputs such as GIGAFACTORY_TWIN_* pass.
RESERVED_ENV = frozenset({"GIGAFACTORY_JOB_ID", "GIGAFACTORY_CHECKPOINT_DIR",
                          "GIGAFACTORY_RESTART_COUNT", "GIGAFACTORY_DEVICES",
                          "CUDA_VISIBLE_DEVICES"})


def request_hash(body: JobSubmit) -> str:
    data = json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(data.encode()).hexdigest()


def job_out(job: Job, project: str, user: str, now: datetime, cls: type[JobOut] = JobOut,
            **extra: Any) -> JobOut:
    live = 0.0
    if job.active and job.started_at is not None and job.state in ACTIVE:
        live = job.gpus * max(0.0, (now - job.started_at).total_seconds())
    data = {c: getattr(job, c) for c in JobOut.model_fields if hasattr(job, c)}
    data.update(project=project, user=user, gpu_hours=(job.gpu_seconds + live) / 3600.0, **extra)
    return cls.model_validate(data)


def _validate_against_facility(body: JobSubmit, facility: Facility) -> None:
    try:
        accel = facility.accel_id(body.accelerator)
    except ValueError as exc:
        raise Invalid(["body", "accelerator"], str(exc)) from None
    biggest = facility.max_gang(accel)
    if body.gpus > biggest:
        raise Invalid(
            ["body", "gpus"],
            f"{body.gpus} GPUs can never run here: the largest possible gang"
            f"{' of ' + body.accelerator if body.accelerator else ''} is {biggest} GPUs",
        )
    if body.runtime_estimate is not None and body.runtime_estimate > body.walltime:
        raise Invalid(["body", "runtime_estimate"], "runtime_estimate exceeds walltime")
    for key in body.env:
        if key in RESERVED_ENV:
            raise Invalid(["body", "env", key], f"{key} is set by the executor; remove it")


_parent = aliased(Tenant)
# Plain columns, not an ORM entity (cheaper on the hot path); the Tenant itself is
# loaded only for a project with a budget.
_PROJECT_Q = (
    select(Tenant.id, Tenant.parent_id, _parent.parent_id, Tenant.budget_gpu_hours)
    .join(_parent, _parent.id == Tenant.parent_id)
    .where(Tenant.name == bindparam("name"), Tenant.kind == "project")
)
# Constant statements with parameters passed at execution: compiled once, cached.
_REPLAY_Q = select(Job).where(Job.user_id == bindparam("u"), Job.idempotency_key == bindparam("k"))


#: A project as a submission sees it: its id, its ancestry (project, programme,
#: partner) and whether it has a budget.
ProjectRef = tuple[int, tuple[int, ...], bool]


def _submit_project(db: Session, who: Principal, name: str,
                    seen: dict[str, ProjectRef | None]) -> ProjectRef:
    """The project, its ancestry read in the same query (once per name and batch);
    422 unknown, 403 no right."""
    if name not in seen:
        row = db.execute(_PROJECT_Q, {"name": name}).first()
        if row is None:
            seen[name] = None
        else:
            pid, parent_id, partner_id, budget = row
            seen[name] = (pid, tuple(i for i in (pid, parent_id, partner_id) if i is not None),
                          budget is not None)
    found = seen[name]
    if found is None or not who.can(Cap.READ, found[1]):
        raise Invalid(["body", "project"], f"unknown project {name!r} (or not yours)")
    if not who.can(Cap.SUBMIT, found[1]):
        raise Forbidden(f"{who.name} may not submit jobs to project {name}")
    return found


def _replay(db: Session, who: Principal, key: str, digest: str) -> Job | None:
    job = db.scalar(_REPLAY_Q, {"u": who.user_id, "k": key})
    if job is not None and job.request_hash != digest:
        raise Conflict(
            f"Idempotency-Key {key!r} was already used for a different request (job {job.id})"
        )
    return job


@dataclass(frozen=True, slots=True)
class Submission:
    """One submit request: who, what, with which Idempotency-Key, at what time."""

    who: Principal
    body: JobSubmit
    key: str | None
    now: datetime


#: ``(job, outcome, created)``: outcome is accepted, held or replayed.
Outcome = tuple[JobOut, str, bool]


def submit(
    db: Session,
    who: Principal,
    body: JobSubmit,
    idempotency_key: str | None,
    settings: Settings,
    facility: Facility,
    now: datetime,
) -> Outcome:
    """Create a job; returns ``(job, outcome, created)``. A replayed key returns the
    original job with ``created=False``; outcome is accepted, held or replayed."""
    try:
        result = submit_many(db, [Submission(who, body, idempotency_key, now)], settings, facility)[0]
    except IntegrityError:
        # Two retries with one key raced; the other one won: answer with its job.
        db.rollback()
        prior = _replay(db, who, idempotency_key, request_hash(body)) if idempotency_key else None
        if prior is None:
            raise
        return job_out(prior, body.project, who.name, now), "replayed", False
    if isinstance(result, ServiceError):
        raise result
    return result


def submit_many(
    db: Session,
    items: Sequence[Submission],
    settings: Settings,
    facility: Facility,
    projects: dict[str, ProjectRef | None] | None = None,
) -> list[Outcome | ServiceError]:
    """Create the jobs of several submissions in one transaction (group commit); each
    gets its outcome or the error that refused it, in order. Idempotency is optimistic:
    the unique (user, key) constraint catches a replay at insert time, so a first
    submission costs no extra lookup; an ``IntegrityError`` (a key used twice) rolls
    the whole batch back and the caller retries the submissions one by one."""
    results: list[Outcome | ServiceError | None] = [None] * len(items)
    if projects is None:
        projects = {}  # lookups by name, filled as the batch needs them (callers may pre-fill)
    budgets: dict[int, BudgetOut] = {}  # once per project and batch (the batch is one instant)
    rows: list[tuple[int, dict[str, Any]]] = []
    for i, it in enumerate(items):
        who, body, now = it.who, it.body, it.now
        digest = request_hash(body)
        try:
            project_id, _, has_budget = _submit_project(db, who, body.project, projects)
            _validate_against_facility(body, facility)
            state, hold_kind, reason = "pending", None, f"submitted by {who.name}"
            if has_budget:
                budget = budgets.get(project_id)
                if budget is None:
                    tenant = db.get(Tenant, project_id)
                    assert tenant is not None
                    budget = budgets[project_id] = budget_status(db, tenant, now)
                if budget.exhausted:
                    if settings.budget_exhausted == "refuse":
                        raise BudgetExhausted(f"{budget.reason}; ask a partner manager for more")
                    state, hold_kind = "held", "budget"
                    reason = f"submitted by {who.name}; held: {budget.reason}"
        except ServiceError as exc:
            # A retry of an accepted submission answers with its job, even if it would
            # be refused now (budget spent since, for instance).
            try:
                prior = _replay(db, who, it.key, digest) if it.key else None
            except ServiceError as conflict:
                results[i] = conflict
                continue
            results[i] = exc if prior is None else (job_out(prior, body.project, who.name, now),
                                                     "replayed", False)
            continue
        rows.append((i, _job_values(it, project_id, state, hold_kind, reason, digest, settings)))
    if rows:
        ids = store.insert_jobs(db, [
            (v, items[i].who.name, {"project": items[i].body.project, "gpus": v["gpus"],
                                    "state": v["state"]})
            for i, v in rows
        ])
        db.commit()
        for (i, v), jid in zip(rows, ids, strict=True):
            # Built from values already validated: no second validation on the hot path.
            data = {k: v[k] for k in _OUT_FROM_VALUES}
            data.update(_OUT_NEW, id=jid, project=items[i].body.project, user=items[i].who.name,
                        gpu_hours=0.0, state=JobState(v["state"]))
            out = JobOut.model_construct(**data)
            results[i] = (out, "held" if v["state"] == "held" else "accepted", True)
    return [r for r in results if r is not None]


#: JobOut fields a new job takes from its inserted values, and those it starts without.
_OUT_NEW: dict[str, Any] = {"started_at": None, "ended_at": None, "estimated_start": None,
                            "placement": None, "checkpoint_dir": None, "exit_code": None}
_OUT_FROM_VALUES = tuple(f for f in JobOut.model_fields
                         if f not in _OUT_NEW and f not in ("id", "project", "user", "gpu_hours"))


def _job_values(it: Submission, project_id: int, state: str, hold_kind: str | None, reason: str,
                digest: str, settings: Settings) -> dict[str, Any]:
    body = it.body
    return {
        "project_id": project_id,
        "user_id": it.who.user_id,
        "name": body.name,
        "gpus": body.gpus,
        "accelerator": body.accelerator,
        "topology": body.topology.value,
        "priority": body.priority,
        "walltime": body.walltime,
        "runtime_estimate": body.runtime_estimate,
        "checkpointable": body.checkpointable,
        "checkpoint_interval": body.checkpoint_interval,
        "grace_period": body.grace_period or settings.default_grace,
        "command": list(body.command),
        "env": dict(body.env),
        "workdir": body.workdir,
        "state": state,
        "state_reason": reason,
        "hold_kind": hold_kind,
        "submitted_at": it.now,
        "queued_at": it.now,
        "pending_reason": "waiting for the next scheduling cycle" if state == "pending" else None,
        "idempotency_key": it.key,
        "request_hash": digest,
        "gpu_seconds": 0.0,
        "restart_count": 0,
        "active": False,
    }


# --- reading ----------------------------------------------------------------------------


def _names(db: Session, job: Job) -> tuple[str, str]:
    project = db.get(Tenant, job.project_id)
    user = db.get(User, job.user_id)
    return (project.name if project else "?"), (user.name if user else "?")


def visible_job(db: Session, who: Principal, job_id: int) -> tuple[Job, tuple[int, ...]]:
    """The job and its project's ancestry, or 404 when missing or not readable."""
    job = db.get(Job, job_id)
    chain = tenant_chain(db, job.project_id) if job is not None else ()
    if job is None or not who.can(Cap.READ, chain):
        raise NotFound(f"no job {job_id}")
    return job, chain


def show(db: Session, who: Principal, job_id: int, now: datetime) -> JobDetail:
    job, _ = visible_job(db, who, job_id)
    events = db.scalars(select(JobEvent).where(JobEvent.job_id == job.id).order_by(JobEvent.id))
    project, user = _names(db, job)
    out = job_out(job, project, user, now, JobDetail,
                  events=[JobEventOut.model_validate(e) for e in events])
    assert isinstance(out, JobDetail)
    return out


def list_jobs(
    db: Session,
    who: Principal,
    now: datetime,
    *,
    limit: int,
    cursor: int | None = None,
    project: str | None = None,
    states: Sequence[str] = (),
    user: str | None = None,
) -> tuple[list[JobOut], int | None]:
    """Newest first. Keyset pagination on ``id``: pass the returned cursor back."""
    q = (
        select(Job, Tenant.name, User.name)
        .join(Tenant, Tenant.id == Job.project_id)
        .join(User, User.id == Job.user_id)
        .order_by(Job.id.desc())
        .limit(limit + 1)
    )
    scope = project_scope(db, who, Job.project_id, project)
    if scope is not None:
        q = q.where(scope)
    if states:
        q = q.where(Job.state.in_(list(states)))
    if user is not None:
        uid = db.scalar(select(User.id).where(User.name == user))
        if uid is None:
            return [], None
        q = q.where(Job.user_id == uid)
    if cursor is not None:
        q = q.where(Job.id < cursor)
    rows = db.execute(q).all()
    items = [job_out(j, p, u, now) for j, p, u in rows[:limit]]
    nxt = rows[limit - 1][0].id if len(rows) > limit else None
    return items, nxt


# --- actions ----------------------------------------------------------------------------


def _actionable(db: Session, who: Principal, job_id: int, verb: str) -> Job:
    job, chain = visible_job(db, who, job_id)
    if who.can(Cap.MANAGE_ANY, chain):
        return job
    if job.user_id == who.user_id and who.can(Cap.MANAGE_OWN, chain):
        return job
    raise Forbidden(f"{who.name} may not {verb} job {job_id}")


def _finish(db: Session, who: Principal, job: Job, verb: str, now: datetime, **detail: Any) -> Job:
    record(db, who.name, f"job.{verb}", f"job:{job.id}", now, **detail)
    db.commit()
    return job


def _why(who: Principal, verb: str, reason: str) -> str:
    return f"{verb} by {who.name}" + (f": {reason}" if reason else "")


def cancel(db: Session, who: Principal, job_id: int, reason: str, now: datetime) -> Job:
    job = _actionable(db, who, job_id, "cancel")
    changes: dict[str, Any] = {"pending_reason": None, "estimated_start": None}
    if job.state not in ACTIVE:
        changes["ended_at"] = now
    # Active jobs keep their GPUs (active=True) until the executor confirms they stopped.
    transition(db, job, "cancelled", _why(who, "cancelled", reason), who.name, now, **changes)
    return _finish(db, who, job, "cancel", now, reason=reason)


def hold(db: Session, who: Principal, job_id: int, reason: str, now: datetime) -> Job:
    job = _actionable(db, who, job_id, "hold")
    if job.state not in ("pending", "requeued"):
        raise Conflict(f"job {job_id} is {job.state}; only pending or requeued jobs can be held")
    transition(db, job, "held", _why(who, "held", reason), who.name, now, hold_kind="user",
               pending_reason=None, estimated_start=None)
    return _finish(db, who, job, "hold", now, reason=reason)


def release(db: Session, who: Principal, job_id: int, reason: str, now: datetime) -> Job:
    job = _actionable(db, who, job_id, "release")
    if job.state != "held":
        raise Conflict(f"job {job_id} is {job.state}; only held jobs can be released")
    project = db.get(Tenant, job.project_id)
    if project is not None and project.budget_gpu_hours is not None:
        budget = budget_status(db, project, now)
        if budget.exhausted:
            raise BudgetExhausted(f"{budget.reason}; the job stays held")
    transition(db, job, "pending", _why(who, "released", reason), who.name, now, hold_kind=None,
               queued_at=now, pending_reason="waiting for the next scheduling cycle")
    return _finish(db, who, job, "release", now, reason=reason)


def requeue(db: Session, who: Principal, job_id: int, reason: str, now: datetime) -> Job:
    """Running: stop it (SIGTERM, grace) and queue it again. Failed: retry it. Either way
    it resumes from the same checkpoint directory with restart count + 1."""
    job = _actionable(db, who, job_id, "requeue")
    why = _why(who, "requeue requested", reason)
    if job.state in ACTIVE and job.state != "preempting":
        transition(db, job, "preempting", why, who.name, now, stop_requested_at=None)
    elif job.state == "failed":
        transition(db, job, "requeued", why, who.name, now, restart_count=job.restart_count + 1,
                   ended_at=None, exit_code=None, queued_at=now,
                   pending_reason="waiting for the next scheduling cycle")
    else:
        raise Conflict(
            f"job {job_id} is {job.state}; only running, starting or failed jobs can be requeued"
        )
    return _finish(db, who, job, "requeue", now, reason=reason)
