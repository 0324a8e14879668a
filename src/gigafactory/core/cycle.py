"""One scheduling cycle, in named phases:

    snapshot → entitlements → order → admit (place / preempt / reserve / backfill) → estimate → decide

:func:`run_cycle` is the whole cycle on one screen; each phase is a small function
below it. The cycle starts jobs inside the scheduler's state (drivers launch them)
and marks preemption victims; it changes nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from gigafactory.core import backfill, preemption
from gigafactory.core.decisions import CycleStats, Decisions, PendingStatus, ReserveJob, StartJob
from gigafactory.core.facility import IntArray
from gigafactory.core.jobs import Placement, PriorityClass, TopologyWish
from gigafactory.core.placement import place
from gigafactory.core.policies import Policy
from gigafactory.core.shares import entitlements, fair_share_factor

if TYPE_CHECKING:
    from gigafactory.core.scheduler import PendingJob, RunningJob, Scheduler

FloatArray = backfill.FloatArray


def run_cycle(s: Scheduler, now: float) -> Decisions:
    ctx = snapshot(s, now)
    entitle(ctx)
    queue = order(ctx)
    for i, job in enumerate(queue):
        if saturated(ctx):
            wait_tail(ctx, queue[i:])
            break
        admit(ctx, job)
    estimate(ctx)
    return decide(ctx)


@dataclass
class Reservation:
    job: PendingJob
    start: float
    nodes: IntArray
    counts: IntArray
    claim_nodes: IntArray
    claim_counts: IntArray


@dataclass
class CycleContext:
    """Scratch state of one cycle; dropped when the cycle ends."""

    s: Scheduler
    now: float
    policy: Policy
    ent: FloatArray = field(default_factory=lambda: np.zeros(0))
    fair_share: FloatArray = field(default_factory=lambda: np.zeros(0))
    committed: FloatArray = field(default_factory=lambda: np.zeros(0))
    starts: list[StartJob] = field(default_factory=list)
    preemptions: list[preemption.PreemptJob] = field(default_factory=list)
    reservations: list[Reservation] = field(default_factory=list)
    status: dict[str, PendingStatus] = field(default_factory=dict)
    blocked: list[tuple[PendingJob, str]] = field(default_factory=list)
    fail_min: dict[tuple[int | None, TopologyWish], int] = field(default_factory=dict)
    reserved_classes: set[int] = field(default_factory=set)
    stop: str | None = None
    reclaim_left: int = 0
    backfill_left: int = 64
    claimed: int = 0
    latest_reservation: float = float("-inf")
    victim_pool: list[RunningJob] | None = None
    over_anc: list[tuple[int, ...]] = field(default_factory=list)
    _avail: FloatArray | None = None
    _reasons: dict[tuple[object, ...], str] = field(default_factory=dict)

    def avail(self) -> FloatArray:
        """When each node is wholly free (lazily built; kept current within the cycle)."""
        if self._avail is None:
            st = self.s.state
            self._avail = np.where(st.node_up, np.maximum(st.node_busy_until, self.now), np.inf)
        return self._avail

    @property
    def depth(self) -> int:
        d = self.policy.reservation_depth
        return self.s.config.reservation_depth if d is None else d


# ---------------------------------------------------------------- phases
def snapshot(s: Scheduler, now: float) -> CycleContext:
    """Fix the inputs of this cycle: time, policy, and GPUs already being reclaimed."""
    ctx = CycleContext(s, now, s.policy, reclaim_left=s.config.reclaim_attempts)
    ctx.committed = np.zeros(len(s.tree))
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
    demand = np.where(tree.is_leaf, s.used, 0.0) + s.pending_gpus
    capacity = float(s.facility.node_gpus[s.state.node_up].sum())
    ctx.ent = entitlements(tree, capacity, demand)
    total = float(s._usage.sum())
    share = s._usage / total if total > 0 else np.zeros(len(tree))
    ctx.fair_share = fair_share_factor(share, tree.share)


def order(ctx: CycleContext) -> list[PendingJob]:
    """Jobs already reclaiming capacity first, then the policy's order."""
    key = ctx.policy.key
    jobs = sorted(ctx.s.pending.values(), key=lambda j: key(ctx, j))
    if ctx.s.reclaiming:
        first = [j for j in jobs if j.spec.id in ctx.s.reclaiming]
        jobs = first + [j for j in jobs if j.spec.id not in ctx.s.reclaiming]
    return jobs


def admit(ctx: CycleContext, job: PendingJob) -> None:
    """Start the job if it fits; otherwise reclaim, reserve or record why it waits."""
    if ctx.stop is not None:
        ctx.blocked.append((job, f"behind job {ctx.stop} (strict first-come first-served)"))
        return
    limit = over_limit(ctx, job)
    if limit:
        ctx.blocked.append((job, limit))
        return
    alloc = try_place(ctx, job)
    if alloc is not None:
        start(ctx, job, alloc, "fits now")
        return
    if ctx.policy.backfill and ctx.reservations:
        alloc = try_backfill(ctx, job)
        if alloc is not None:
            start(ctx, job, alloc, f"backfilled ahead of the reservation of job {ctx.reservations[0].job.spec.id}")
            return
    if ctx.policy.reclaim and preemption.reclaim(ctx, job):
        return
    wants_reservation = ctx.policy.reserve and (
        len(ctx.reservations) < ctx.depth or int(job.spec.priority) not in ctx.reserved_classes
    )
    if ctx.policy.strict or wants_reservation:
        reserve(ctx, job, why_waiting(ctx, job))
        if ctx.policy.strict:
            ctx.stop = job.spec.id
        return
    ctx.blocked.append((job, why_waiting(ctx, job)))


def saturated(ctx: CycleContext) -> bool:
    """No free GPUs and no reservation slots left: from here on only backfill,
    reclaim or a class's first reservation can act, so the tail is handled in bulk."""
    p = ctx.policy
    if ctx.s.state.free_total or ctx.stop is not None:
        return False
    if not p.reserve:
        return True
    return len(ctx.reservations) >= ctx.depth


def wait_tail(ctx: CycleContext, rest: list[PendingJob]) -> None:
    """Handle the saturated tail in bulk: jobs that backfill, reclaim or a class's first
    reservation might help are admitted one by one, in order; every other job waits,
    with its reason worked out once per distinct shape (vectorised)."""
    s = ctx.s
    p = ctx.policy
    n = len(rest)
    gpus = np.fromiter((j.spec.gpus for j in rest), dtype=np.int64, count=n)
    tenants = np.fromiter((j.tenant for j in rest), dtype=np.int64, count=n)
    prio = np.fromiter((j.spec.priority for j in rest), dtype=np.int64, count=n)
    maybe = np.zeros(n, dtype=bool)
    if p.backfill and ctx.backfill_left > 0 and ctx.claimed > 0:
        rt = np.fromiter((j.spec.expected_runtime for j in rest), dtype=np.float64, count=n)
        maybe |= (gpus <= ctx.claimed) & (ctx.now + rt <= ctx.latest_reservation)
    if p.reclaim and ctx.reclaim_left > 0:
        maybe |= (prio == int(PriorityClass.URGENT)) | (gpus <= preemption.headroom(ctx)[tenants])
    if p.reserve:
        for c in set(prio.tolist()) - ctx.reserved_classes:
            maybe[int(np.argmax(prio == c))] = True  # the head of an unreserved class
    # One reason per distinct (size, topology, accelerator, class, over-entitled tenant).
    topo = np.fromiter((_TOPO[j.spec.topology] for j in rest), dtype=np.int64, count=n)
    accel = np.fromiter((-1 if j.accel is None else j.accel for j in rest), dtype=np.int64, count=n)
    above = np.zeros(n, dtype=bool)
    if p.reclaim:
        used = s.used[tenants]
        above = (used > 0) & (used + gpus > ctx.ent[tenants] + 1e-6)
    keys = np.stack([gpus, topo, accel, prio, np.where(above, tenants, -1)], axis=1)
    uniq, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    texts = [why_waiting(ctx, rest[int(i)]) for i in first.tolist()]
    blocked = ctx.blocked
    inv = inverse.reshape(-1).tolist()
    for k, (job, m) in enumerate(zip(rest, maybe.tolist(), strict=True)):
        if m and (ctx.backfill_left > 0 or ctx.reclaim_left > 0 or int(job.spec.priority) not in ctx.reserved_classes):
            admit(ctx, job)
        else:
            blocked.append((job, texts[inv[k]]))


_TOPO = {w: i for i, w in enumerate(TopologyWish)}


def estimate(ctx: CycleContext) -> None:
    """Fluid start estimates for blocked jobs without a reservation, in queue order."""
    s = ctx.s
    status = ctx.status
    todo = [(j, r) for j, r in ctx.blocked if j.spec.id not in status]
    if not todo:
        return
    runs = s.running.values()
    rel_t = np.fromiter((r.expected_end for r in runs), dtype=np.float64, count=len(runs))
    rel_g = np.fromiter((r.spec.gpus for r in runs), dtype=np.int64, count=len(runs))
    gpus = np.fromiter((j.spec.gpus for j, _ in todo), dtype=np.int64, count=len(todo))
    rt = np.fromiter((j.spec.expected_runtime for j, _ in todo), dtype=np.float64, count=len(todo))
    work = gpus * rt
    reserved = sum(r.job.spec.gpus * r.job.spec.expected_runtime for r in ctx.reservations)
    ahead = reserved + np.cumsum(work) - work
    capacity = int(s.facility.node_gpus[s.state.node_up].sum())
    est = backfill.fluid_estimates(ctx.now, gpus, ahead, s.state.free_total, capacity,
                                   np.maximum(rel_t, ctx.now), rel_g)
    est_list = np.where(np.isfinite(est), est, np.nan).tolist()
    for (job, reason), t in zip(todo, est_list, strict=True):
        jid = job.spec.id
        status[jid] = PendingStatus(jid, None if t != t else t, reason)


def decide(ctx: CycleContext) -> Decisions:
    """Release this cycle's claims and package the decisions."""
    s = ctx.s
    for r in ctx.reservations:
        if r.claim_nodes.shape[0]:
            s.state._apply(r.claim_nodes, r.claim_counts)
    statuses = tuple(ctx.status.values())
    names = s.tree.names
    return Decisions(
        now=ctx.now,
        starts=tuple(ctx.starts),
        preemptions=tuple(ctx.preemptions),
        reservations=tuple(
            ReserveJob(r.job.spec.id, r.start, Placement(tuple(zip(r.nodes.tolist(), r.counts.tolist(), strict=True))))
            for r in ctx.reservations
        ),
        pending=statuses,
        entitlements={names[i]: round(float(ctx.ent[i]), 6) for i in range(1, len(names))},
        stats=CycleStats(
            pending=len(s.pending),
            running=len(s.running),
            started=len(ctx.starts),
            preempted=len(ctx.preemptions),
            reserved=len(ctx.reservations),
            free_gpus=s.state.free_total,
        ),
    )


# ---------------------------------------------------------------- steps
def over_limit(ctx: CycleContext, job: PendingJob) -> str | None:
    """A reason if starting the job would break a borrow limit or a lend limit."""
    s = ctx.s
    g = job.spec.gpus
    for a in s.tree.path[job.tenant]:
        if s.used[a] + g > s.tree.cap[a]:
            spec = s.tree.specs[a - 1]
            return (f"{spec.kind.value} {spec.name} is at its borrow limit "
                    f"({int(s.used[a])} of {int(s.tree.cap[a])} GPUs in use)")
    kept = preemption.kept_for_lenders(ctx, job)
    if kept and s.state.free_for(job.accel) - kept < g:
        return f"waiting for {g} GPUs: {kept} idle GPUs are kept for their owners (lend limits)"
    return None


def try_place(ctx: CycleContext, job: PendingJob) -> tuple[IntArray, IntArray] | None:
    """Place on free (unclaimed) GPUs; remembers the smallest size that failed."""
    spec = job.spec
    key = (job.accel, spec.topology)
    if spec.gpus >= ctx.fail_min.get(key, 1 << 62):
        return None
    alloc = place(ctx.s.state, spec.gpus, job.accel, spec.topology)
    if alloc is None:
        ctx.fail_min[key] = spec.gpus
    return alloc


def try_backfill(ctx: CycleContext, job: PendingJob) -> tuple[IntArray, IntArray] | None:
    """Use GPUs claimed by reservations that start after this job is expected to end."""
    if ctx.backfill_left <= 0:
        return None
    end = ctx.now + job.spec.expected_runtime
    later = [r for r in ctx.reservations if r.start >= end and r.claim_nodes.shape[0]]
    if not later:
        return None
    st = ctx.s.state
    if st.free_for(job.accel) + ctx.claimed < job.spec.gpus:
        return None
    ctx.backfill_left -= 1
    for r in later:
        st._apply(r.claim_nodes, r.claim_counts)
        ctx.claimed -= int(r.claim_counts.sum())
    alloc = place(st, job.spec.gpus, job.accel, job.spec.topology)
    if alloc is not None:  # hold the job's GPUs while re-claiming, so claims skip them
        st._apply(alloc[0], -alloc[1])
    for r in later:  # re-claim what is still free; the backfilled job ends before r starts
        take = np.minimum(st.node_free[r.claim_nodes], r.claim_counts)
        keep = take > 0
        r.claim_nodes, r.claim_counts = r.claim_nodes[keep], take[keep]
        st._apply(r.claim_nodes, -r.claim_counts)
        ctx.claimed += int(r.claim_counts.sum())
    if alloc is not None:
        st._apply(alloc[0], alloc[1])
    return alloc


def start(ctx: CycleContext, job: PendingJob, alloc: tuple[IntArray, IntArray], reason: str) -> None:
    from gigafactory.core.scheduler import RunningJob

    s = ctx.s
    nodes, counts = alloc
    ctx.s.reclaiming.pop(job.spec.id, None)
    s.remove_pending(job.spec.id)
    rj = RunningJob(job.spec, job.tenant, job.accel, nodes, counts, ctx.now,
                    None, job.attained_service)
    s._start(rj)
    if ctx._avail is not None:
        ctx._avail[nodes] = np.maximum(ctx._avail[nodes], rj.expected_end)
    ctx.starts.append(StartJob(job.spec.id, rj.placement, reason))


def reserve(ctx: CycleContext, job: PendingJob, reason: str) -> None:
    """Plan the earliest start and claim the free GPUs of its nodes for this cycle."""
    s = ctx.s
    spec = job.spec
    planned = backfill.plan(s.state, ctx.avail(), spec.gpus, job.accel, spec.topology, ctx.now)
    if planned is None:
        ctx.status[spec.id] = PendingStatus(spec.id, None, reason + "; no feasible start while nodes are down")
        ctx.blocked.append((job, reason))
        return
    t, nodes, counts = planned
    claim = np.minimum(s.state.node_free[nodes], counts)
    keep = claim > 0
    res = Reservation(job, t, nodes, counts, nodes[keep], claim[keep])
    if res.claim_nodes.shape[0]:
        s.state._apply(res.claim_nodes, -res.claim_counts)
        ctx.claimed += int(res.claim_counts.sum())
    ctx.avail()[nodes] = t + spec.expected_runtime
    ctx.reservations.append(res)
    ctx.latest_reservation = max(ctx.latest_reservation, t)
    ctx.reserved_classes.add(int(spec.priority))
    ctx.status[spec.id] = PendingStatus(spec.id, t, reason)
    ctx.blocked.append((job, reason))


def why_waiting(ctx: CycleContext, job: PendingJob) -> str:
    """The reason a job cannot start now, in words a user understands (cached per shape)."""
    s = ctx.s
    spec = job.spec
    g = spec.gpus
    t = job.tenant
    above = ctx.policy.reclaim and s.used[t] > 0 and s.used[t] + g > ctx.ent[t] + 1e-6
    first = ctx.reservations[0].job.spec if ctx.reservations else None
    key = (g, spec.topology, job.accel, int(spec.priority), t if above else -1,
           s.state.free_total, ctx.claimed, len(ctx.reservations))
    text = ctx._reasons.get(key)
    if text is not None:
        return text
    if g <= s.state.max_node_gpus:
        shape = "on one node"
    else:
        shape = {TopologyWish.BLOCK: "in one block", TopologyWish.NVLINK: "in one NVLink domain"}.get(
            spec.topology, "in the fewest blocks")
    free = s.state.free_for(job.accel)
    text = f"waiting for {g} GPUs {shape} ({free} free)"
    if first is not None:
        if free + ctx.claimed >= g:
            text = f"behind the reservation of job {first.id}"
        if int(first.priority) > int(spec.priority):
            text += f"; priority class {spec.priority.name.lower()} comes after {first.priority.name.lower()}"
    if above:
        text += (f"; project {spec.project} would go above its entitlement "
                 f"({int(s.used[t])} GPUs in use, entitled to {ctx.ent[t]:.0f})")
    ctx._reasons[key] = text
    return text
