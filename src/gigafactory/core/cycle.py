"""One scheduling cycle, in named phases:

    snapshot → entitlements → order → admit (place / preempt / reserve / backfill) → estimate → decide

:func:`run_cycle` is the whole cycle on one screen; each phase is a small function
below it (the admit steps live in :mod:`gigafactory.core.admit`). The cycle starts
jobs inside the scheduler's state (drivers launch them) and marks preemption victims;
it changes nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from gigafactory.core import admit as steps
from gigafactory.core import backfill, preemption, shares
from gigafactory.core.decisions import (
    CycleStats,
    Decisions,
    PendingStatus,
    PreemptJob,
    ReserveJob,
    StartJob,
)
from gigafactory.core.facility import IntArray
from gigafactory.core.jobs import TopologyWish
from gigafactory.core.policies import Policy
from gigafactory.core.shares import fair_share_factor
from gigafactory.core.tail import wait_tail

if TYPE_CHECKING:
    from gigafactory.core.jobs import RunningJob
    from gigafactory.core.queue import PendingJob
    from gigafactory.core.scheduler import Scheduler

FloatArray = backfill.FloatArray
_EMPTY: FloatArray = np.zeros(0)  # placeholder until a phase sets the array
_EMPTY.flags.writeable = False


def run_cycle(s: Scheduler, now: float) -> Decisions:
    if steps.idle(s):
        return Decisions(now=now, stats=_stats(s, 0, 0, 0))
    ctx = snapshot(s, now)
    entitle(ctx)
    queue = order(ctx)
    for i in range(queue.shape[0]):
        if saturated(ctx):
            wait_tail(ctx, queue[i:])
            break
        steps.admit(ctx, s.queue.job(int(queue[i])))
        if ctx.settled:
            break
    estimate(ctx)
    return decide(ctx)


@dataclass(slots=True)
class CycleContext:
    """Scratch state of one cycle; dropped when the cycle ends."""

    s: Scheduler
    now: float
    policy: Policy
    ent: FloatArray = field(default_factory=lambda: _EMPTY)  # set by entitle()
    fair_share: FloatArray = field(default_factory=lambda: _EMPTY)  # set by entitle()
    committed: FloatArray = field(default_factory=lambda: _EMPTY)  # set by snapshot()
    taken: FloatArray = field(default_factory=lambda: _EMPTY)  # set by snapshot()
    starts: list[StartJob] = field(default_factory=list)
    preemptions: list[PreemptJob] = field(default_factory=list)
    reservations: list[steps.Reservation] = field(default_factory=list)
    status: dict[str, PendingStatus] = field(default_factory=dict)
    blocked: list[tuple[PendingJob, str]] = field(default_factory=list)
    tail: tuple[IntArray, list[str]] | None = None
    fail_min: dict[tuple[int | None, TopologyWish], int] = field(default_factory=dict)
    reserved_classes: set[int] = field(default_factory=set)
    stop: str | None = None
    reclaim_left: int = 0
    backfill_left: int = 64
    claimed: int = 0
    claimed_of: dict[int, int] = field(default_factory=dict)  # per accelerator type
    latest_reservation: float = float("-inf")
    victim_pool: list[RunningJob] | None = None
    over_anc: list[tuple[int, ...]] = field(default_factory=list)
    victim_accel: list[int] = field(default_factory=list)
    ends_under: dict[int, tuple[FloatArray, IntArray]] = field(default_factory=dict)
    reclaim_failed: dict[tuple[object, ...], int] = field(default_factory=dict)
    backfill_failed: dict[tuple[object, ...], int] = field(default_factory=dict)  # → state version
    # jobs owed capacity that backfilled this cycle: (nodes, counts, expected end)
    owed_held: list[tuple[list[int], list[int], float]] = field(default_factory=list)
    settled: bool = False  # nothing more can start or be preempted (see :func:`admit.idle`)
    reclaimable: bool = True  # preemption.may_preempt() at the snapshot (it cannot turn true later)
    explain: bool = field(init=False)  # the scheduler's config.explain
    _avail: FloatArray | None = None

    def __post_init__(self) -> None:
        self.explain = self.s.config.explain

    def wait(self, job: PendingJob, reason: str, at: float | None = None, status: bool = True) -> None:
        """``job`` waits. A cycle that explains itself keeps the reason for
        :func:`estimate` and, with ``status``, the expected start ``at`` for the
        decisions; a cycle that does not keeps nothing (nothing would read it)."""
        if self.explain:
            if status:
                self.status[job.spec.id] = PendingStatus(job.spec.id, at, reason)
            self.blocked.append((job, reason))

    def avail(self) -> FloatArray:
        """When each node is expected to be wholly free: ``-inf`` when free, ``inf`` when
        down; plans read it as ``max(avail, now)`` (lazily built; kept current within
        the cycle)."""
        if self._avail is None:
            st = self.s.state
            self._avail = np.where(st.node_up, st.node_busy_until, np.inf) if st.down else st.node_busy_until.copy()
        return self._avail

    def plan(self, job: PendingJob) -> backfill.Plan | None:
        """Earliest start and nodes for ``job`` (see :func:`backfill.plan`)."""
        spec = job.spec
        return self.s.plans.plan(self.s.state, self.avail(), spec.gpus, job.accel, spec.topology, self.now)

    @property
    def depth(self) -> int:
        d = self.policy.reservation_depth
        return self.s.config.reservation_depth if d is None else d


# ---------------------------------------------------------------- phases
def snapshot(s: Scheduler, now: float) -> CycleContext:
    """Fix the inputs of this cycle: time, policy, and GPUs already being reclaimed."""
    ctx = CycleContext(s, now, s.policy, reclaim_left=s.config.reclaim_attempts,
                       reclaimable=preemption.may_preempt(s))
    s.plans.rotate()
    s.failed_placements.rotate()
    if not ctx.reclaimable:
        return ctx  # nothing reads committed or taken GPUs: nothing can be reclaimed
    ctx.committed = np.zeros(len(s.tree))
    ctx.taken = np.zeros(len(s.tree))
    for jid in list(s.reclaiming):
        job = s.pending.get(jid)
        if job is None:
            del s.reclaiming[jid]
            continue
        for a in s.tree.path[job.tenant]:
            ctx.committed[a] += job.spec.gpus
    return ctx


def entitle(ctx: CycleContext) -> None:
    """Entitlements from demand (running + pending), and fair-share factors from usage."""
    s = ctx.s
    tree = s.tree
    if not (ctx.policy.shares or ctx.explain):
        return  # nothing in this cycle reads them
    if ctx.policy.ranks_tenants and not (ctx.explain or ctx.reclaimable) and s.queue.tenant_count() < 2:
        return  # only the order would read them, and one tenant needs no ranking
    demand = (s.used + s.pending_gpus).tolist()
    ctx.ent = np.array(shares.entitlements_of(tree, float(s.state.up_gpus), demand))
    total = float(s._usage.sum())
    share = s._usage / total if total > 0 else np.zeros(len(tree))
    ctx.fair_share = fair_share_factor(share, tree.share)


def order(ctx: CycleContext) -> IntArray:
    """Queue slots in the policy's order; jobs already reclaiming capacity go first."""
    q = ctx.s.queue
    slots = q.slots()  # by arrival
    group = ctx.policy.group
    if ctx.s.reclaiming:
        first = np.array([ctx.s.pending[j].slot for j in ctx.s.reclaiming], dtype=np.int64)
        keys = [np.zeros(slots.shape[0], dtype=np.int64) if group is None else group(ctx, q, slots),
                ~np.isin(slots, first)]
        return slots[np.lexsort(keys)]  # stable: ties keep the arrival order
    if group is None:
        return slots
    return slots[group(ctx, q, slots).argsort(kind="stable")]


def saturated(ctx: CycleContext) -> bool:
    """No reservation slots left (or strict order stopped): the rest of the queue is
    handled in bulk, looking one by one only at jobs that something could help."""
    return ctx.stop is not None or not ctx.policy.reserve or len(ctx.reservations) >= ctx.depth


def estimate(ctx: CycleContext) -> None:
    """Fluid start estimates for waiting jobs without a reservation, in queue order."""
    s, q, status = ctx.s, ctx.s.queue, ctx.status
    if not ctx.explain:
        return
    todo = [(j, r) for j, r in ctx.blocked if j.spec.id not in status]
    slots = np.array([j.slot for j, _ in todo], dtype=np.int64)
    reasons = [r for _, r in todo]
    if ctx.tail is not None:
        slots = np.concatenate([slots, ctx.tail[0]])
        reasons += ctx.tail[1]
    if slots.shape[0] == 0:
        return
    runs = list(s.running.values())
    rel_t = np.fromiter((r.expected_end for r in runs), dtype=np.float64, count=len(runs))
    rel_g = np.fromiter((r.spec.gpus for r in runs), dtype=np.int64, count=len(runs))
    f = s.facility
    run_accel = f.node_accel[np.fromiter((r.nodes[0] for r in runs), dtype=np.int64, count=len(runs))]
    gpus, accel = q.gpus[slots], q.accel[slots]
    work = gpus * q.runtime[slots]
    est = np.empty(slots.shape[0])
    up = s.state.node_up
    for a in np.unique(accel).tolist():  # per accelerator type; -1 = any type
        sel = accel == a
        mine = np.ones(len(runs), dtype=bool) if a < 0 else run_accel == a
        res = [r for r in ctx.reservations if a < 0 or r.accel == a]
        ahead = sum(r.job.spec.gpus * r.job.spec.expected_runtime for r in res)
        ahead = ahead + np.cumsum(work[sel]) - work[sel]
        cap = int(f.node_gpus[up if a < 0 else up & (f.node_accel == a)].sum())
        est[sel] = backfill.fluid_estimates(ctx.now, gpus[sel], ahead, s.state.free_for(None if a < 0 else a),
                                           cap, np.maximum(rel_t[mine], ctx.now), rel_g[mine])
    est_list = [None if t != t else t for t in np.where(np.isfinite(est), est, np.nan).tolist()]
    ids = q.ids
    jids = [ids[i] for i in slots.tolist()]
    status.update(zip(jids, map(PendingStatus, jids, est_list, reasons), strict=True))


def decide(ctx: CycleContext) -> Decisions:
    """Release this cycle's claims and package the decisions: only the starts and
    preemptions when the cycle need not explain itself."""
    s = ctx.s
    for r in ctx.reservations:
        if r.claimed:
            s.state._apply(r.claim_nodes, r.claim_counts)
    stats = _stats(s, len(ctx.starts), len(ctx.preemptions), len(ctx.reservations))
    if not ctx.explain:
        return Decisions(now=ctx.now, starts=tuple(ctx.starts), preemptions=tuple(ctx.preemptions), stats=stats)
    return Decisions(
        now=ctx.now,
        starts=tuple(ctx.starts),
        preemptions=tuple(ctx.preemptions),
        reservations=tuple(
            ReserveJob(r.job.spec.id, r.start, s.plans.placement(r.nodes, r.counts), firm=not r.borrowing)
            for r in ctx.reservations
        ),
        pending=tuple(ctx.status.values()),
        entitlements=_rounded(s, ctx.ent.tolist()),
        stats=stats,
    )


def _stats(s: Scheduler, started: int, preempted: int, reserved: int) -> CycleStats:
    return CycleStats(len(s.pending), len(s.running), started, preempted, reserved, s.state.free_total)


def _rounded(s: Scheduler, ent: list[float]) -> dict[str, float]:
    """Entitlements by tenant name, rounded."""
    names = s.tree.names
    return {names[i]: round(e, 6) for i, e in enumerate(ent) if i}
