"""The admit step of a cycle, for one job: place, backfill, reclaim or reserve.

    admit(job):
        over a borrow or lend limit?          → wait, with the limit as the reason
        fits on free, unclaimed GPUs?          → start
        fits before a later reservation starts → start (backfill)
        owed capacity, or urgent?              → preempt victims (see preemption)
        reservation slots left?                → reserve the earliest feasible start
        otherwise                              → wait, with the reason

:func:`idle` tells when no admission can start anything any more.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from gigafactory.core import preemption
from gigafactory.core.decisions import StartJob
from gigafactory.core.facility import IntArray
from gigafactory.core.jobs import PriorityClass, RunningJob, TopologyWish
from gigafactory.core.placement import place
from gigafactory.core.state import raise_to

if TYPE_CHECKING:
    from gigafactory.core.cycle import CycleContext
    from gigafactory.core.queue import PendingJob
    from gigafactory.core.scheduler import Scheduler

Alloc = tuple[IntArray, IntArray]
_NONE: IntArray = np.zeros(0, dtype=np.int64)  # no nodes
_NONE.flags.writeable = False


@dataclass(slots=True)
class Reservation:
    """A blocked job's earliest start on ``nodes``, and the GPUs of those nodes it
    claims for the rest of the cycle (free now, so no later job takes them)."""

    job: PendingJob
    start: float
    nodes: IntArray
    counts: IntArray
    claim_nodes: IntArray
    claim_counts: IntArray
    # tenants it would take above their entitlement; computed only where something reads
    # it (owed backfill, or the decisions' ``firm``), else left empty
    borrowing: tuple[int, ...] = ()
    accel: int = 0  # the accelerator type of its nodes
    claimed: int = 0  # GPUs it claims now (the sum of claim_counts)


def idle(s: Scheduler, ctx: CycleContext | None = None) -> bool:
    """Provably nothing can start or be preempted, so a cycle that need not explain
    itself (``explain`` off, as in the twin) has nothing (more) to do: the smallest
    job of every queued shape cannot be placed on the GPUs that are free or claimed
    by this cycle's reservations (placement needs free GPUs, backfill free or claimed
    ones), and nothing can be reclaimed (no guarantees, no urgent job, nothing
    reclaiming). Without claims, "cannot be placed" is
    :meth:`~gigafactory.core.state.ClusterState.could_place` (counts, the fullest node
    and wholly free nodes); with claims, more GPUs than free and claimed together.

    Checked before a cycle and, within it (``ctx``), after every start: within a cycle
    free GPUs only shrink and claims only move them around, so once this holds no
    later step can start a job. Such a cycle stops there; its starts and preemptions
    are exactly those of the full cycle."""
    if s.config.explain or ((ctx is None or ctx.reclaimable) and preemption.may_preempt(s)):
        return False
    q, st = s.queue, s.state
    if ctx is None or not ctx.claimed:
        return not any(st.could_place(m, None if a < 0 else a) for (a, _), m in q.smallest().items())
    of = ctx.claimed_of
    return all(m > (st.free_total + ctx.claimed if a < 0 else int(st.accel_free[a]) + of.get(a, 0))
               for (a, _), m in q.smallest().items())


def admit(ctx: CycleContext, job: PendingJob) -> None:
    """Start the job if it fits; otherwise reclaim, reserve or record why it waits."""
    if ctx.stop is not None:
        ctx.wait(job, f"behind job {ctx.stop} (strict first-come first-served)", status=False)
        return
    limit = over_limit(ctx, job) if ctx.s.tree.limited else None
    if limit:
        if ctx.explain:
            ctx.wait(job, limit, None if "lend limits" in limit else limit_lifted_at(ctx, job))
        return
    alloc = try_place(ctx, job)
    if alloc is not None:
        start(ctx, job, alloc, "fits now")
        return
    if ctx.policy.backfill and ctx.reservations and ctx.backfill_left > 0:
        owed = ctx.reclaimable and ctx.policy.reclaim and preemption.owed(ctx, job)
        got = try_backfill(ctx, job, owed)
        if got is not None:
            alloc, around = got
            start(ctx, job, alloc, around)
            return
    if ctx.reclaimable and ctx.policy.reclaim and preemption.reclaim(ctx, job):
        return  # (without anything reclaimable, reclaim() would return False at once)
    wants_reservation = ctx.policy.reserve and (
        len(ctx.reservations) < ctx.depth or int(job.spec.priority) not in ctx.reserved_classes
    )
    if ctx.policy.strict or wants_reservation:
        reserve(ctx, job, why_waiting(ctx, job) if ctx.explain else "")
        if ctx.policy.strict:
            ctx.stop = job.spec.id
        return
    if ctx.explain:
        ctx.wait(job, why_waiting(ctx, job), status=False)


def over_limit(ctx: CycleContext, job: PendingJob) -> str | None:
    """A reason if starting the job would break a borrow limit or a lend limit."""
    s = ctx.s
    g = job.spec.gpus
    for a in s.tree.path[job.tenant]:
        if s.used[a] + g > s.tree.cap[a]:
            spec = s.tree.specs[a - 1]
            if g > s.tree.cap[a]:  # limits were lowered after the job was submitted
                return (f"asks for more GPUs than {spec.kind.value} {spec.name} may ever hold "
                        f"({int(s.tree.cap[a])}); it cannot start unless the limit is raised")
            return (f"{spec.kind.value} {spec.name} is at its borrow limit "
                    f"({int(s.used[a])} of {int(s.tree.cap[a])} GPUs in use)")
    kept = preemption.kept_for_lenders(ctx, job)
    if kept and s.state.free_for(job.accel) - kept < g:
        return f"waiting for {g} GPUs: {kept} idle GPUs are kept for their owners (lend limits)"
    return None


def limit_lifted_at(ctx: CycleContext, job: PendingJob) -> float | None:
    """When enough of the capped tenants' own jobs end for this job to fit its limits."""
    s = ctx.s
    g = job.spec.gpus
    at = ctx.now
    for a in s.tree.path[job.tenant]:
        excess = s.used[a] + g - s.tree.cap[a]
        if excess <= 0:
            continue
        ends = ctx.ends_under.get(a)
        if ends is None:  # once per capped tenant and cycle: its jobs' ends, in order
            runs = [r for r in s.running.values() if a in s.tree.path[r.tenant]]
            t = np.fromiter((r.expected_end for r in runs), dtype=np.float64, count=len(runs))
            k = np.argsort(t, kind="stable")
            gpus = np.fromiter((r.spec.gpus for r in runs), dtype=np.int64, count=len(runs))
            ends = ctx.ends_under[a] = (t[k], np.cumsum(gpus[k]))
        times, freed = ends
        i = int(np.searchsorted(freed, excess))
        if i >= times.shape[0]:
            return None
        at = max(at, float(times[i]))
    return at


def try_place(ctx: CycleContext, job: PendingJob) -> Alloc | None:
    """Place on free (unclaimed) GPUs; remembers the smallest size that failed."""
    spec = job.spec
    key = (job.accel, spec.topology)
    if spec.gpus >= ctx.fail_min.get(key, 1 << 62):
        return None
    alloc = ctx.s.failed_placements.place(ctx.s.state, spec.gpus, job.accel, spec.topology)
    if alloc is None:
        ctx.fail_min[key] = spec.gpus
    return alloc


def try_backfill(ctx: CycleContext, job: PendingJob, owed: bool = False) -> tuple[Alloc, str] | None:
    """Use GPUs claimed by reservations that start after this job is expected to end,
    or, for a job within its tenant's entitlement (``owed``), by reservations of
    borrowing jobs. Returns the placement and the reason."""
    if ctx.backfill_left <= 0:
        return None
    ctx.backfill_left -= 1  # every attempt counts: the budget bounds the cycle's work
    got = _attempt(ctx, job, owed)
    if got is None:
        return None
    tried, later = got
    st = ctx.s.state
    before = st.version
    end = ctx.now + job.spec.expected_runtime
    for r in later:
        st._apply(r.claim_nodes, r.claim_counts)
        _claimed(ctx, r.accel, -r.claimed)
    alloc = place(st, job.spec.gpus, job.accel, job.spec.topology)
    if alloc is not None:  # hold the job's GPUs while re-claiming, so claims skip them
        st._apply(alloc[0], -alloc[1])
    for r in later:  # re-claim what is still free
        take = np.minimum(st.node_free[r.claim_nodes], r.claim_counts)
        keep = take > 0
        r.claim_nodes, r.claim_counts = r.claim_nodes[keep], take[keep]
        r.claimed = sum(r.claim_counts.tolist())
        st._apply(r.claim_nodes, -r.claim_counts)
        _claimed(ctx, r.accel, r.claimed)
    if alloc is None:  # nothing placed: every claim was taken back whole, as it was
        st.version = before  # so nothing a placement reads changed (no rescan, same memo key)
        ctx.backfill_failed[tried] = st.version
        return None
    st._apply(alloc[0], alloc[1])
    if owed:  # it may outlive a borrower's start: later owed jobs must leave room (_delays_stacked)
        ctx.owed_held.append((alloc[0].tolist(), alloc[1].tolist(), end))
    used = set(alloc[0].tolist())
    hit = next((r for r in later if used.intersection(r.nodes.tolist())), later[0])
    if hit.start >= end:
        return alloc, f"backfilled: ends before the reservation of job {hit.job.spec.id} starts"
    return alloc, (f"within its entitlement, ahead of the reservation of job {hit.job.spec.id}, "
                   f"which would borrow")


def _around(ctx: CycleContext, job: PendingJob, owed: bool) -> list[Reservation]:
    """Reservations whose claimed GPUs the job may use: those that start after it is
    expected to end, and, for a job ``owed`` capacity, those of borrowing jobs, unless
    that could delay a reservation stacked behind one (see :func:`_delays_stacked`)."""
    end = ctx.now + job.spec.expected_runtime
    if not owed:
        return [r for r in ctx.reservations if r.claimed and r.start >= end]
    mine = ctx.s.tree.path[job.tenant]
    res = ctx.reservations
    yields = [r.start >= end or any(a not in mine for a in r.borrowing) for r in res]
    return [r for i, r in enumerate(res) if r.claimed and yields[i]
            and (r.start >= end or not _delays_stacked(ctx, job, i, yields))]


def _delays_stacked(ctx: CycleContext, job: PendingJob, i: int, yields: list[bool]) -> bool:
    """Could the job, using the claim of borrowing reservation ``i`` past its start,
    delay a reservation that does not yield to it? Only one planned after ``i`` on a node
    ``i`` claims, that claimed less than it needs there, is exposed: it waits for ``i``
    on that node and counts on the GPUs ``i`` holds (the free GPUs were taken before it
    was planned). Jobs that started earlier are gone by its start; what may remain are
    this job (at most its size on the node) and jobs owed capacity that went around a
    borrower earlier in the cycle. It is safe when those leave it room."""
    res, st = ctx.reservations, ctx.s.state
    claimed = set(res[i].claim_nodes.tolist())
    for k in range(i + 1, len(res)):
        r2 = res[k]
        if yields[k]:
            continue
        own = dict(zip(r2.claim_nodes.tolist(), r2.claim_counts.tolist(), strict=True))
        for n, need in zip(r2.nodes.tolist(), r2.counts.tolist(), strict=True):
            if n not in claimed or own.get(n, 0) >= need:
                continue
            cap = int(st.facility.node_gpus[n])
            held = sum(c for nodes, counts, e in ctx.owed_held if e > r2.start
                       for m, c in zip(nodes, counts, strict=True) if m == n)
            if min(job.spec.gpus, cap) + held > cap - need:
                return True
    return False


def _attempt(ctx: CycleContext, job: PendingJob,
             owed: bool) -> tuple[tuple[object, ...], list[Reservation]] | None:
    """The key of a placement attempt and the reservations it goes around (see
    :func:`_around`), or ``None`` when it would fail before placing anything: fewer GPUs
    free and claimed than the job needs (checked first: it is the cheap test), nothing
    to go around, or the same attempt already failed since nothing changed."""
    if ctx.s.state.free_for(job.accel) + ctx.claimed < job.spec.gpus:
        return None
    later = _around(ctx, job, owed)
    if not later:
        return None
    tried = (job.spec.gpus, job.accel, job.spec.topology, tuple(map(id, later)))
    return None if failed_before(ctx, tried) else (tried, later)


def backfill_gives_up(ctx: CycleContext, job: PendingJob) -> bool:
    """:func:`try_backfill` would return at once for this job (not owed capacity),
    having done nothing but use up one attempt."""
    return _attempt(ctx, job, False) is None


def failed_before(ctx: CycleContext, tried: tuple[object, ...]) -> bool:
    """The same gang shape already failed to backfill around the same reservations in
    this cycle, and no free count changed since (a failed attempt puts back exactly what
    it took), so it would fail again."""
    return ctx.backfill_failed.get(tried) == ctx.s.state.version


def _claimed(ctx: CycleContext, accel: int, delta: int) -> None:
    """Keep the cycle's claimed-GPU counters (total and per accelerator type) current."""
    ctx.claimed += delta
    ctx.claimed_of[accel] = ctx.claimed_of.get(accel, 0) + delta


def start(ctx: CycleContext, job: PendingJob, alloc: Alloc, reason: str) -> None:
    s = ctx.s
    nodes, counts = alloc
    if s.reclaiming.pop(job.spec.id, None) is not None:
        for a in s.tree.path[job.tenant]:
            ctx.committed[a] -= job.spec.gpus
    s.remove_pending(job.spec.id)
    rj = RunningJob(job.spec, job.tenant, nodes, counts, ctx.now, None, job.attained_service)
    s._start(rj)
    if ctx._avail is not None:
        raise_to(ctx._avail, nodes, rj.expected_end)
    ctx.starts.append(StartJob(job.spec.id, rj.placement, reason))
    ctx.settled = idle(s, ctx)


def reserve(ctx: CycleContext, job: PendingJob, reason: str) -> None:
    """Plan the earliest start and claim the free GPUs of its nodes for this cycle."""
    s = ctx.s
    spec = job.spec
    st = s.state
    planned = ctx.plan(job)
    if planned is None:
        ctx.wait(job, reason + "; no feasible start while nodes are down")
        return
    t, nodes, counts = planned
    # whom it would take above their entitlement: read by owed backfill and the decisions
    borrowing = tuple(a for a in s.tree.path[job.tenant] if s.used[a] + spec.gpus > ctx.ent[a] + 1e-6) if (
        ctx.policy.reclaim and (ctx.reclaimable or ctx.explain)) else ()
    first = int(nodes[0])
    accel = st.accel_of(first)
    if nodes.shape[0] == 1:  # one node: the same, on scalars
        take = min(int(st.node_free[first]), int(counts[0]))
        claim_nodes, claim = (nodes, np.array([take], dtype=np.int64)) if take > 0 else (_NONE, _NONE)
        ctx.avail()[first] = t + spec.expected_runtime
    else:
        free = st.node_free[nodes]
        if np.count_nonzero(free):
            claim = np.minimum(free, counts)
            keep = claim > 0
            claim_nodes, claim = nodes[keep], claim[keep]
        else:
            claim_nodes, claim = _NONE, _NONE
        ctx.avail()[nodes] = t + spec.expected_runtime
    res = Reservation(job, t, nodes, counts, claim_nodes, claim, borrowing, accel)
    if claim.shape[0]:  # else its nodes are busy: it claims nothing now (the usual case)
        res.claimed = sum(claim.tolist())
        st._apply(claim_nodes, -claim)
        _claimed(ctx, accel, res.claimed)
    ctx.reservations.append(res)
    if t > ctx.latest_reservation:
        ctx.latest_reservation = t
    ctx.reserved_classes.add(int(spec.priority))
    ctx.wait(job, reason, t)


def why_waiting(ctx: CycleContext, job: PendingJob) -> str:
    """The reason a job cannot start now, in words a user understands."""
    spec = job.spec
    text = _shape_reason(ctx, spec.gpus, spec.topology, job.accel, int(spec.priority))
    if _above(ctx, job.tenant, spec.gpus):
        text += _entitlement_note(ctx, job.tenant)
    return text


def _above(ctx: CycleContext, tenant: int, gpus: int) -> bool:
    used = ctx.s.used[tenant]
    return bool(ctx.policy.reclaim and used > 0 and used + gpus > ctx.ent[tenant] + 1e-6)


def _shape_reason(ctx: CycleContext, g: int, wish: TopologyWish, accel: int | None, prio: int) -> str:
    s = ctx.s
    if g <= s.state.node_size_for(accel):
        shape = "on one node"
    else:
        shape = {TopologyWish.BLOCK: "in one block", TopologyWish.NVLINK: "in one NVLink domain"}.get(
            wish, "in the fewest blocks")
    free = s.state.free_for(accel)
    text = f"waiting for {g} GPUs {shape} ({free} free)"
    same = [r for r in ctx.reservations if accel is None or r.accel == accel]
    if same:
        first = same[0].job.spec
        claimed = ctx.claimed if accel is None else ctx.claimed_of.get(accel, 0)
        if free + claimed >= g:
            text = f"behind the reservation of job {first.id}"
        if int(first.priority) > prio:
            text += (f"; priority class {PriorityClass(prio).name.lower()} comes after "
                     f"{first.priority.name.lower()}")
    return text


def _entitlement_note(ctx: CycleContext, tenant: int) -> str:
    s = ctx.s
    name = s.tree.names[tenant]
    return (f"; project {name} would go above its entitlement "
            f"({int(s.used[tenant])} GPUs in use, entitled to {ctx.ent[tenant]:.0f})")


def bulk_reasons(ctx: CycleContext, slots: IntArray) -> list[str]:
    """:func:`why_waiting` for many queued jobs: one text per distinct shape, plus a
    note per tenant that would go above its entitlement."""
    if slots.shape[0] == 0:
        return []
    s, q = ctx.s, ctx.s.queue
    tenants, gpus = q.tenant[slots], q.gpus[slots]
    keys = np.stack([gpus, q.topo[slots], q.accel[slots], q.prio[slots]], axis=1)
    _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    wishes = list(TopologyWish)
    texts = [
        _shape_reason(ctx, int(gpus[i]), wishes[int(q.topo[slots[i]])],
                      None if q.accel[slots[i]] < 0 else int(q.accel[slots[i]]), int(q.prio[slots[i]]))
        for i in first.tolist()
    ]
    out = [texts[k] for k in inverse.reshape(-1).tolist()]
    if ctx.policy.reclaim:
        used = s.used[tenants]
        above = np.flatnonzero((used > 0) & (used + gpus > ctx.ent[tenants] + 1e-6))
        notes: dict[int, str] = {}
        for k, t in zip(above.tolist(), tenants[above].tolist(), strict=True):
            note = notes.get(t)
            if note is None:
                note = notes[t] = _entitlement_note(ctx, t)
            out[k] += note
    return out
