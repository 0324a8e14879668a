"""Reclaim and preemption.

An owner under its entitlement with demand that does not fit takes back capacity it
lent out: jobs of tenants *above* their entitlement are preempted. Rules:

- never for a tenant that is already at or above its entitlement (no thrashing);
- ``urgent`` jobs may also preempt ``preemptible`` jobs anywhere;
- a victim's priority class is never above the preemptor's, and it has run its
  minimum runtime;
- if running jobs are expected to end and free the space before the reclaim deadline
  (counted from when the job became pending), nothing is preempted: the job waits
  for its reservation instead. Urgent jobs do not wait;
- victims are chosen to minimise lost work: GPUs × time since their last checkpoint,
  and a victim tenant is not pushed below its own entitlement by more than one job.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice
from typing import TYPE_CHECKING

import numpy as np

from gigafactory.core.decisions import PreemptJob
from gigafactory.core.jobs import PriorityClass
from gigafactory.core.placement import place

if TYPE_CHECKING:
    from gigafactory.core.cycle import CycleContext
    from gigafactory.core.jobs import RunningJob
    from gigafactory.core.queue import PendingJob
    from gigafactory.core.scheduler import Scheduler

__all__ = ["PreemptJob", "kept_for_lenders", "reclaim"]


def may_preempt(s: Scheduler) -> bool:
    """A cycle might preempt (or is already reclaiming): jobs are reclaiming capacity,
    or the policy reclaims and some tenant has a guarantee or an urgent job waits.
    When False, :func:`reclaim` (called only under a reclaiming policy) returns False
    for every job without doing anything."""
    return bool(s.reclaiming) or reclaim_possible(s)


def reclaim_possible(s: Scheduler) -> bool:
    """The policy reclaims and something could be owed or is urgent: some tenant has a
    guarantee, or an urgent job waits."""
    return s.policy.reclaim and (s.tree.guaranteed or s.queue.has_class(PriorityClass.URGENT))


def owed(ctx: CycleContext, job: PendingJob) -> bool:
    """True when the job is owed capacity: it fits inside its tenant's entitlement at
    every level (no thrashing), and inside the *guarantee* at some level (a project, or
    the programme or partner it belongs to, is under what it was promised). Tenants
    without guarantees share idle capacity by fair share, never by preemption."""
    s = ctx.s
    if not s.tree.guaranteed:
        return False  # no guarantee anywhere: nothing is ever owed
    g = job.spec.gpus
    guarantee = s.tree.guarantee
    under_guarantee = False
    for a in s.tree.path[job.tenant]:
        held = s.used[a] + ctx.committed[a] + g
        if held > ctx.ent[a] + 1e-6:
            return False
        under_guarantee = under_guarantee or held <= guarantee[a] + 1e-6
    return under_guarantee


def headroom(ctx: CycleContext) -> np.ndarray:
    """Per tenant: the largest job that could be owed (``owed(job)`` implies
    ``job.gpus <= headroom[job.tenant]``): within the entitlement at every level, and
    within the guarantee at some level."""
    s = ctx.s
    held = s.used + ctx.committed
    free = ctx.ent + 1e-6 - held
    promised = s.tree.guarantee + 1e-6 - held
    room = np.full(len(s.tree), np.inf)
    best = np.full(len(s.tree), -np.inf)
    for i in range(1, len(s.tree)):  # parents precede children
        p = int(s.tree.parent[i])
        room[i] = min(room[p], free[i])
        best[i] = max(best[p], promised[i])
    out: np.ndarray = np.minimum(room, best)
    return out


def reclaim(ctx: CycleContext, job: PendingJob) -> bool:
    """Try to make room for ``job`` by preemption. True when the job waits for GPUs
    being reclaimed (its status is set when the cycle explains itself)."""
    s = ctx.s
    spec = job.spec
    waiting = s.reclaiming.get(spec.id)
    if waiting:
        alive = [v for v in waiting if v in s.running]
        if alive:
            gpus = sum(s.running[v].spec.gpus for v in alive)
            eta = ctx.now + s.config.preemption_grace
            reason = f"waiting for {gpus} GPUs being reclaimed from {len(alive)} preempted job(s)"
            ctx.wait(job, reason, eta)
            return True
        del s.reclaiming[spec.id]
    if ctx.reclaim_left <= 0:
        return False
    urgent = spec.priority is PriorityClass.URGENT
    is_owed = owed(ctx, job)
    if not (is_owed or urgent):
        return False
    if not urgent:
        ctx.reclaim_left -= 1  # planning is the costly part: it counts against the budget
        planned = ctx.plan(job)
        if planned is not None and planned[0] <= job.pending_since + s.config.reclaim_deadline:
            return False  # natural ends free the space in time: no work is lost
    if urgent:
        ctx.reclaim_left -= 1
    key = (job.tenant, job.accel, spec.topology, int(spec.priority))
    if spec.gpus >= ctx.reclaim_failed.get(key, 1 << 62):
        return False  # a job of this tenant and shape, no larger, found no victims
    picked = _choose(ctx, job, _candidates(ctx, job, is_owed))
    if not picked:
        ctx.reclaim_failed[key] = spec.gpus
        return False
    names: list[str] = []
    for rj in picked:
        rj.preempting = True
        lost = rj.spec.gpus * rj.progress_since_checkpoint(ctx.now)
        why = "urgent job needs preemptible capacity" if urgent and not is_owed else (
            f"reclaiming lent capacity for project {spec.project}, which is under its entitlement")
        ctx.preemptions.append(PreemptJob(rj.spec.id, spec.id, why, lost))
        names.append(rj.spec.project)
    s.reclaiming[spec.id] = tuple(rj.spec.id for rj in picked)
    for a in s.tree.path[job.tenant]:
        ctx.committed[a] += spec.gpus
    gpus = sum(rj.spec.gpus for rj in picked)
    who = ", ".join(sorted(set(names)))
    reason = f"reclaiming {gpus} GPUs from {who} (preempting {len(picked)} job(s))"
    ctx.wait(job, reason, ctx.now + s.config.preemption_grace)
    return True


def _candidates(ctx: CycleContext, job: PendingJob, is_owed: bool) -> Iterator[RunningJob]:
    """Running jobs that may be preempted for ``job``, cheapest lost work first (lazy)."""
    s = ctx.s
    tree = s.tree
    mine = set(tree.path[job.tenant])
    if ctx.victim_pool is None:  # once per cycle: jobs of borrowers, and preemptible jobs
        over = (s.used - 1e-6) > ctx.ent
        over_anc: list[tuple[int, ...]] = [tuple(a for a in p if over[a]) for p in tree.path]
        ctx.over_anc = over_anc
        node_up, node_accel = s.state.node_up, s.facility.node_accel
        pool = [
            rj for rj in s.running.values()
            if not rj.preempting and rj.start_time < ctx.now
            and (rj.spec.priority is PriorityClass.PREEMPTIBLE or over_anc[rj.tenant])
            and node_up[rj.nodes].all()  # on a failed node: ending anyway, GPUs held
        ]
        pool.sort(key=lambda r: (r.spec.gpus * r.progress_since_checkpoint(ctx.now), -r.spec.gpus, r.spec.id))
        ctx.victim_pool = pool
        ctx.victim_accel = [int(node_accel[r.nodes[0]]) for r in pool]
    over_anc = ctx.over_anc
    urgent = job.spec.priority is PriorityClass.URGENT
    for rj, accel in zip(ctx.victim_pool, ctx.victim_accel, strict=True):
        if rj.preempting or rj.spec.priority > job.spec.priority:
            continue
        if ctx.now - rj.start_time < rj.spec.min_runtime:
            continue  # too young to preempt
        if job.accel is not None and accel != job.accel:
            continue  # the type it runs on, whatever it asked for
        borrower = is_owed and any(a not in mine for a in over_anc[rj.tenant])
        if borrower or (urgent and rj.spec.priority is PriorityClass.PREEMPTIBLE):
            yield rj


#: Most candidate victims looked at for one job (in lost-work order).
MAX_CONSIDERED = 1024


def _allowed(ctx: CycleContext, job: PendingJob, rj: RunningJob, taken: dict[int, float]) -> bool:
    """Do not push a borrower below its entitlement by more than this one job."""
    s = ctx.s
    if job.spec.priority is PriorityClass.URGENT and rj.spec.priority is PriorityClass.PREEMPTIBLE:
        return True
    mine = s.tree.path[job.tenant]
    return any(
        s.used[a] - ctx.taken[a] - taken.get(a, 0.0) > ctx.ent[a] + 1e-6
        for a in s.tree.path[rj.tenant] if a not in mine
    )


def _take(ctx: CycleContext, rj: RunningJob, taken: dict[int, float]) -> None:
    for a in ctx.s.tree.path[rj.tenant]:
        taken[a] = taken.get(a, 0.0) + rj.spec.gpus


def _single_node_victims(ctx: CycleContext, job: PendingJob, cands: list[RunningJob]) -> list[RunningJob]:
    """For a gang that fits on one node: the node where freeing it loses the least work,
    and the victims there (cheapest first). The final choice re-checks every rule."""
    s = ctx.s
    st, f = s.state, s.facility
    g = job.spec.gpus
    none: dict[int, float] = {}
    by_node: dict[int, list[tuple[RunningJob, int, float]]] = {}
    for rj in cands:
        if not _allowed(ctx, job, rj, none):
            continue
        lost = rj.spec.gpus * rj.progress_since_checkpoint(ctx.now)
        for n, c in zip(rj.nodes.tolist(), rj.counts.tolist(), strict=True):
            by_node.setdefault(n, []).append((rj, c, lost))
    best_cost, best = float("inf"), []
    for n in sorted(by_node):
        if f.node_gpus[n] < g or not st.node_up[n] or (job.accel is not None and f.node_accel[n] != job.accel):
            continue
        got, cost = int(st.node_free[n]), 0.0
        chosen: list[RunningJob] = []
        for rj, c, lost in by_node[n]:
            if got >= g or cost >= best_cost:
                break
            chosen.append(rj)
            got += c
            cost += lost
        if got >= g and cost < best_cost:
            best_cost, best = cost, chosen
    return best


def _choose(ctx: CycleContext, job: PendingJob, cands: Iterable[RunningJob]) -> list[RunningJob]:
    """Victims whose GPUs let the gang be placed, losing the least work; pruned to the
    victims whose nodes the placement uses. Empty when no choice works."""
    s = ctx.s
    st = s.state
    tree = s.tree
    g = job.spec.gpus
    pool = list(islice(cands, MAX_CONSIDERED))
    if g <= st.max_node_gpus:
        pool = _single_node_victims(ctx, job, pool)
    taken: dict[int, float] = {}  # on top of what this cycle already reclaims (ctx.taken)
    picked: list[RunningJob] = []
    result = None
    for rj in pool:  # victims' GPUs are released tentatively, and given back below
        if len(picked) >= s.config.max_victims:
            break
        if not _allowed(ctx, job, rj, taken):
            continue
        _take(ctx, rj, taken)
        picked.append(rj)
        st.release(rj.nodes, rj.counts)
        if st.free_for(job.accel) < g:
            continue
        result = place(st, g, job.accel, job.spec.topology)
        if result is not None:
            break
    for v in picked:
        st.allocate(v.nodes, v.counts, v.expected_end)
    if result is None:
        return []
    node_set = set(result[0].tolist())
    needed = [v for v in picked if node_set.intersection(v.nodes.tolist())]
    for v in needed:
        for a in tree.path[v.tenant]:
            ctx.taken[a] += v.spec.gpus
    return needed


def kept_for_lenders(ctx: CycleContext, job: PendingJob) -> int:
    """Idle guarantee that tenants outside the job's path do not lend (lend limits)."""
    s = ctx.s
    tree = s.tree
    limited = tree.lend_limited
    if not limited:
        return 0
    mine = set(tree.path[job.tenant])
    kept = 0.0
    counted: set[int] = set()
    for i in limited:
        if i in mine or any(a in counted for a in tree.path[i][:-1]):
            continue
        idle = tree.guarantee[i] - s.used[i] - tree.lend[i]
        if idle > 0:
            kept += idle
            counted.add(i)
    return int(kept)
