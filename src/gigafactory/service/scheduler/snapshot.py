"""Load the database into a fresh :class:`gigafactory.core.scheduler.Scheduler`.

Every cycle rebuilds the core from rows, so the database is the only state: running
jobs (anything an executor holds GPUs for) via ``restore_running``, queued jobs via
``submit``, decayed usage via ``set_usage`` (decayed to ``now`` by the core itself,
since the scheduler is created at the previous cycle's time), and the core's
``reclaiming`` map from the victims' ``preempted_for`` column.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from gigafactory.core.facility import Facility
from gigafactory.core.jobs import JobSpec, Placement, PriorityClass, TopologyWish
from gigafactory.core.scheduler import Scheduler, SchedulerConfig
from gigafactory.core.shares import ShareTree
from gigafactory.service.jobs.models import Job
from gigafactory.service.tenants.models import Tenant
from gigafactory.service.tenants.service import share_tree
from gigafactory.service.usage.models import SchedulerState

log = logging.getLogger("gigafactory.scheduler")
CORE_STATE = "core"
#: States of an active job whose GPUs are about to be freed (never pick it as a victim).
STOPPING = ("preempting", "cancelled", "failed", "completed")


@dataclass
class Snapshot:
    now: float
    last: float
    sched: Scheduler
    tree: ShareTree
    tenants: dict[int, Tenant]
    active: list[Job]
    queued: list[Job]
    budget_held: list[Job]
    refused: dict[int, str] = field(default_factory=dict)
    used_devices: dict[int, set[int]] = field(default_factory=lambda: defaultdict(set))

    def project(self, job: Job) -> str:
        return self.tenants[job.project_id].name

    def partner_id(self, project_id: int) -> int:
        t = self.tenants[project_id]
        while t.parent_id is not None:
            t = self.tenants[t.parent_id]
        return t.id


def spec_of(job: Job, project: str) -> JobSpec:
    return JobSpec(
        id=str(job.id),
        project=project,
        gpus=job.gpus,
        submit_time=job.submitted_at.timestamp(),
        walltime=job.walltime,
        runtime_estimate=job.runtime_estimate,
        accelerator=job.accelerator,
        topology=TopologyWish(job.topology),
        priority=PriorityClass.parse(job.priority),
        checkpointable=job.checkpointable,
        checkpoint_interval=job.checkpoint_interval,
    )


def placement_of(job: Job) -> Placement:
    parts = sorted((int(p["index"]), len(p["devices"])) for p in job.placement or [])
    return Placement(tuple(parts))


def last_checkpoint(job: Job, start: float, now: float) -> float | None:
    """Assumed time of the last checkpoint: every ``checkpoint_interval`` since start."""
    if not job.checkpointable or not job.checkpoint_interval:
        return None
    done = math.floor(max(0.0, now - start) / job.checkpoint_interval)
    return start + done * job.checkpoint_interval if done else None


def load_state(db: Session) -> dict[str, Any]:
    row = db.get(SchedulerState, CORE_STATE)
    return dict(row.value) if row is not None else {}


def load(
    db: Session,
    facility: Facility,
    policy: str,
    config: SchedulerConfig,
    now: float,
) -> Snapshot:
    """Read everything one cycle needs and rebuild the core's state from it."""
    tenants = {t.id: t for t in db.scalars(select(Tenant).order_by(Tenant.id))}
    tree = share_tree(list(tenants.values()))
    state = load_state(db)
    last = float(state.get("t", now))
    last = min(last, now)
    sched = Scheduler(facility, tree, policy, config, now=last)
    sched.set_usage(state.get("usage", {}))
    active = list(db.scalars(select(Job).where(Job.active.is_(True)).order_by(Job.id)))
    queued = list(db.scalars(
        select(Job).where(Job.state.in_(("pending", "requeued"))).order_by(Job.id)
    ))
    budget_held = list(db.scalars(
        select(Job).where(Job.state == "held", Job.hold_kind == "budget").order_by(Job.id)
    ))
    snap = Snapshot(now, last, sched, tree, tenants, active, queued, budget_held)
    for job in active:
        start = (job.started_at.timestamp() if job.started_at else now)
        try:
            sched.restore_running(
                spec_of(job, snap.project(job)), placement_of(job), start,
                last_checkpoint(job, start, now), job.gpu_seconds,
            )
        except (ValueError, KeyError) as exc:
            log.error("job %s cannot be restored into the scheduler: %s", job.id, exc)
            continue
        if job.state in STOPPING:
            sched.running[str(job.id)].preempting = True
        for part in job.placement or []:
            snap.used_devices[int(part["index"])].update(int(d) for d in part["devices"])
    return snap


def submit_queued(snap: Snapshot, skip: set[int]) -> None:
    """Hand queued jobs (not in ``skip``) to the core; its refusals become reasons."""
    for job in snap.queued:
        if job.id in skip:
            continue
        try:
            snap.sched.submit(spec_of(job, snap.project(job)), job.gpu_seconds,
                              now=job.queued_at.timestamp())
        except (ValueError, KeyError) as exc:
            snap.refused[job.id] = str(exc).strip("'\"")
    victims: dict[str, list[str]] = defaultdict(list)
    for job in snap.active:
        if job.state == "preempting" and job.preempted_for is not None:
            victims[str(job.preempted_for)].append(str(job.id))
    for beneficiary, ids in victims.items():
        if beneficiary in snap.sched.pending:
            snap.sched.reclaiming[beneficiary] = tuple(ids)
