"""The scheduler loop: reconcile, collect executor reports, run one core cycle, commit
its decisions in one transaction, then tell the executor (launch, stop).

Each :meth:`SchedulerLoop.run_once` is one cycle. The first one after a (re)start
reconciles first: jobs the database thinks are running but the executor has never
heard of are ended as lost; jobs the executor runs that the database does not want are
killed. Only then is anything new scheduled.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Table, bindparam, or_, select, update
from sqlalchemy.orm import Session

from gigafactory.core.decisions import Decisions
from gigafactory.core.scheduler import SchedulerConfig
from gigafactory.executors import ExecutorError, JobReport, LaunchRequest
from gigafactory.service.db import from_epoch
from gigafactory.service.deps import ServiceContext
from gigafactory.service.jobs.lifecycle import StaleJob, transition
from gigafactory.service.jobs.logs import checkpoint_dir, log_path
from gigafactory.service.jobs.models import Job
from gigafactory.service.scheduler import ledger
from gigafactory.service.scheduler.snapshot import CORE_STATE, Snapshot, load, submit_queued
from gigafactory.service.scheduler.work import ACTOR, apply_leased, claim, end_job
from gigafactory.service.tenants.service import budget_status
from gigafactory.service.usage.models import SchedulerState

log = logging.getLogger("gigafactory.scheduler")
FINAL_ACTIVE = ("cancelled", "failed", "completed")


class SchedulerLoop:
    """Drives one executor from the database. Only the leader may run it."""

    def __init__(self, ctx: ServiceContext, executor: Any, *, config: SchedulerConfig | None = None,
                 owner: str | None = None) -> None:
        self.ctx = ctx
        self.executor = executor
        self.config = config or SchedulerConfig()
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.reconciled = False
        self.cycles = 0
        self.last_cycle: datetime | None = None
        self.last_error: str | None = None
        self.last_decisions: Decisions | None = None

    # ---------------------------------------------------------------- one cycle
    def run_once(self) -> Decisions:
        t0 = time.perf_counter()
        if not self.reconciled:
            self.reconcile()
        self.collect_reports()
        self.enforce_walltime()
        decisions = self.schedule()
        self.launch()
        self.stop()
        self.cycles += 1
        self.last_cycle = self.ctx.clock()
        self.last_decisions = decisions
        if self.ctx.metrics is not None:
            self.ctx.metrics.cycle_seconds.observe(time.perf_counter() - t0)
            self.ctx.metrics.cycles.inc()
        return decisions

    def health(self) -> dict[str, Any]:
        return {"leader": True, "owner": self.owner, "cycles": self.cycles,
                "last_cycle": self.last_cycle.isoformat() if self.last_cycle else None,
                "executor": getattr(self.executor, "name", "?"), "last_error": self.last_error}

    # ---------------------------------------------------------------- reconcile
    def reconcile(self) -> None:
        """Make the database agree with the executor before scheduling anything."""
        now = self.ctx.clock()
        known = self.executor.known_jobs()
        self.collect_reports()
        with self.ctx.sessions() as db:
            # We are the only leader: leases of a crashed predecessor are void.
            db.execute(update(Job).where(Job.lease_token.is_not(None)).values(
                lease_owner=None, lease_token=None, lease_expires_at=None))
            active = {j.id: j for j in db.scalars(select(Job).where(Job.active.is_(True)))}
            for job in active.values():
                if str(job.id) in known or job.state == "starting":
                    continue  # starting jobs were never launched: the launch step does it
                log.warning("job %s was %s but its executor does not know it", job.id, job.state)
                end_job(db, job, "lost", None, "lost while the control plane was down", now)
            db.commit()
        for jid, state in known.items():
            if (not jid.isdigit() or int(jid) not in active) and state == "running":
                log.warning("executor runs job %s the database does not want: killing", jid)
                try:
                    self.executor.cancel(jid, grace=0)
                except ExecutorError as exc:
                    log.warning("could not kill orphan %s: %s", jid, exc)
        self.reconciled = True

    # ---------------------------------------------------------------- reports
    def collect_reports(self) -> None:
        reports: list[JobReport] = self.executor.poll()
        if not reports:
            return
        now = self.ctx.clock()
        with self.ctx.sessions() as db:
            for rep in reports:
                if not rep.job_id.isdigit():
                    continue
                job = db.get(Job, int(rep.job_id))
                if job is None:
                    continue
                try:
                    self._apply_report(db, job, rep, now)
                    db.commit()
                except StaleJob:
                    db.rollback()

    def _apply_report(self, db: Session, job: Job, rep: JobReport, now: datetime) -> None:
        if rep.state == "running":
            if job.state == "starting":
                transition(db, job, "running", "executor reports it running", ACTOR, now)
            return
        end_job(db, job, str(rep.state), rep.exit_code, rep.detail, now)

    def enforce_walltime(self) -> None:
        now = self.ctx.clock()
        with self.ctx.sessions() as db:
            for job in db.scalars(select(Job).where(Job.active.is_(True),
                                                    Job.state.in_(("starting", "running")))):
                if job.started_at and (now - job.started_at).total_seconds() > job.walltime:
                    transition(db, job, "failed", f"walltime limit of {job.walltime:g} s reached",
                               ACTOR, now, ended_at=now, stop_requested_at=None)
            db.commit()

    # ---------------------------------------------------------------- schedule
    def schedule(self) -> Decisions:
        now = self.ctx.clock()
        t = now.timestamp()
        with self.ctx.sessions() as db:
            snap = load(db, self.ctx.facility, self.ctx.settings.policy, self.config, t)
            held = self._budget_holds(db, snap, now)
            submit_queued(snap, held)
            decisions = snap.sched.cycle(t)
            self._commit_decisions(db, snap, decisions, now)
            ledger.accumulate(db, snap, max_gap=max(60.0, 10 * self.ctx.settings.cycle_interval))
            state = db.get(SchedulerState, CORE_STATE) or SchedulerState(key=CORE_STATE, value={})
            state.value = {"t": t, "usage": snap.sched.usage}
            db.merge(state)
            db.commit()
        return decisions

    def _budget_holds(self, db: Session, snap: Snapshot, now: datetime) -> set[int]:
        """Hold queued jobs of projects without budget; release budget holds that can go."""
        exhausted: dict[int, str] = {}
        for t in snap.tenants.values():
            if t.kind == "project" and t.budget_gpu_hours is not None:
                status = budget_status(db, t, now)
                if status.exhausted:
                    exhausted[t.id] = status.reason or "budget exhausted"
        held: set[int] = set()
        for job in snap.queued:
            if job.project_id in exhausted:
                transition(db, job, "held", f"held: {exhausted[job.project_id]}", ACTOR, now,
                           hold_kind="budget", pending_reason=None, estimated_start=None)
                held.add(job.id)
        for job in snap.budget_held:
            if job.project_id not in exhausted:
                transition(db, job, "pending", "released: the project has budget again", ACTOR,
                           now, hold_kind=None, queued_at=now,
                           pending_reason="waiting for the next scheduling cycle")
        return held

    def _devices(self, snap: Snapshot, node: int, count: int) -> list[int]:
        used = snap.used_devices[node]
        free = [d for d in range(int(self.ctx.facility.node_gpus[node])) if d not in used][:count]
        if len(free) < count:
            raise ValueError(f"node {node}: {count} devices wanted, {len(free)} free")
        used.update(free)
        return free

    def _commit_decisions(self, db: Session, snap: Snapshot, d: Decisions, now: datetime) -> None:
        """Starts, preemptions and pending reasons, all in the caller's transaction."""
        queued = {j.id: j for j in snap.queued}
        names = self.ctx.facility.node_names
        for s in d.starts:
            job = queued.get(int(s.job_id))
            if job is None:
                continue
            try:
                placement = [{"node": names[n], "index": n, "devices": self._devices(snap, n, c)}
                             for n, c in s.placement.nodes]
            except ValueError as exc:
                log.error("start of job %s skipped: %s", job.id, exc)
                continue
            ckpt = job.checkpoint_dir or str(checkpoint_dir(self.ctx.settings, job.id))
            try:
                transition(db, job, "starting", s.reason, ACTOR, now, active=True,
                           placement=placement, started_at=now, checkpoint_dir=ckpt,
                           pending_reason=None, estimated_start=None, stop_requested_at=None)
            except StaleJob:
                continue  # cancelled or held meanwhile: next cycle rebuilds from the rows
        active = {j.id: j for j in snap.active}
        for p in d.preemptions:
            victim = active.get(int(p.job_id))
            if victim is None or victim.state not in ("starting", "running"):
                continue
            why = (f"preempted for job {p.for_job}: {p.reason}; "
                   f"{p.lost_gpu_seconds / 3600:.2f} GPU-hours since its last checkpoint")
            try:
                transition(db, victim, "preempting", why, ACTOR, now,
                           preempted_for=int(p.for_job), stop_requested_at=None)
            except StaleJob:
                continue
        rows = [{"b_id": int(st.job_id), "b_reason": st.reason,
                 "b_est": from_epoch(st.estimated_start) if st.estimated_start is not None else None}
                for st in d.pending]
        rows += [{"b_id": jid, "b_reason": f"cannot be scheduled: {why}", "b_est": None}
                 for jid, why in snap.refused.items()]
        if rows:  # one executemany on the table (not the ORM's bulk-by-primary-key path)
            table = cast(Table, Job.__table__)
            jobs = table.c
            db.connection().execute(
                update(table)
                # No IN (...): expanding parameters cannot be used with executemany.
                .where(jobs.id == bindparam("b_id"),
                       or_(jobs.state == "pending", jobs.state == "requeued"))
                .values(pending_reason=bindparam("b_reason"), estimated_start=bindparam("b_est")),
                rows,
            )

    # ---------------------------------------------------------------- executor work
    def launch(self) -> None:
        now = self.ctx.clock()
        due = select(Job).where(Job.state == "starting", Job.active.is_(True))
        for job_id, token in claim(self.ctx.sessions, due, self.owner, self.ctx.settings.lease_ttl, now):
            with self.ctx.sessions() as db:
                job = db.get(Job, job_id)
                if job is None:
                    continue
                req = self._request(job)
            error: str | None = None
            try:
                self.executor.launch(req)
            except ExecutorError as exc:
                error = str(exc)

            def apply(db: Session, job: Job, error: str | None = error) -> None:
                at = self.ctx.clock()
                if error is None:
                    transition(db, job, "running", f"launched on {self.executor.name}", ACTOR, at)
                else:
                    end_job(db, job, "failed", None, f"launch refused: {error}", at)

            apply_leased(self.ctx.sessions, job_id, token, apply)

    def _request(self, job: Job) -> LaunchRequest:
        settings = self.ctx.settings
        devices: dict[str, list[int]] = {p["node"]: list(p["devices"]) for p in job.placement or []}
        return LaunchRequest(
            job_id=str(job.id),
            command=list(job.command),
            devices=devices,
            env=dict(job.env or {}),
            checkpoint_dir=Path(job.checkpoint_dir or checkpoint_dir(settings, job.id)),
            log_path=log_path(settings, job.id),
            restart_count=job.restart_count,
            grace_period=job.grace_period,
            workdir=Path(job.workdir) if job.workdir else None,
        )

    def stop(self) -> None:
        """SIGTERM (then kill after the grace) every active job that must stop."""
        now = self.ctx.clock()
        due = select(Job).where(
            Job.active.is_(True),
            Job.state.in_(("preempting", *FINAL_ACTIVE)),
            Job.stop_requested_at.is_(None),
        )
        for job_id, token in claim(self.ctx.sessions, due, self.owner, self.ctx.settings.lease_ttl, now):
            with self.ctx.sessions() as db:
                job = db.get(Job, job_id)
                if job is None:
                    continue
                preempt = job.state == "preempting"
            unknown = False
            try:
                self.executor.cancel(str(job_id), preempt=preempt)
            except ExecutorError:
                unknown = True  # it is not running there: it ended already

            def apply(db: Session, job: Job, unknown: bool = unknown, preempt: bool = preempt) -> None:
                at = self.ctx.clock()
                if unknown:
                    end_job(db, job, "preempted" if preempt else "cancelled", None,
                            "not running on the executor", at)
                else:
                    job.stop_requested_at = at

            apply_leased(self.ctx.sessions, job_id, token, apply)
