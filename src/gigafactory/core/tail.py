"""The tail of a cycle: the queued jobs after the last reservation slot, in bulk.

A tail job is admitted one by one, in queue order, only if something can still help
it: it might fit now (no larger than its shape's free GPUs and smaller than every
size that already failed), it might backfill into the GPUs reservations claim, it
might reclaim capacity it is owed, or it is the head of a priority class without a
reservation. Every other job waits, with a reason worked out once per distinct shape.

The scan is vectorised: the masks of who qualifies are built for the rest of the
tail, the qualifying jobs are walked in order, and the masks are built again only
after an admission changed something they read (free counts, reservations, the
failed sizes, the budgets).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from gigafactory.core import admit as steps
from gigafactory.core import preemption
from gigafactory.core.facility import IntArray
from gigafactory.core.jobs import PriorityClass, TopologyWish

if TYPE_CHECKING:
    from gigafactory.core.cycle import CycleContext

Mask = np.ndarray
_WISHES = list(TopologyWish)


def wait_tail(ctx: CycleContext, rest: IntArray) -> None:
    """Admit the tail jobs that something can help (see the module); the others wait."""
    p, q = ctx.policy, ctx.s.queue
    if ctx.stop is not None:
        if ctx.explain:
            ctx.tail = (rest, [f"behind job {ctx.stop} (strict first-come first-served)"] * rest.shape[0])
        return
    n = rest.shape[0]
    gpus = q.gpus[rest]
    masks: list[Mask] = []
    queued = q.smallest()  # per shape, the smallest queued job: can any of them fit?
    limit = fit_limits(ctx, queued)
    fits = backfills = reclaims = heads = None
    if any(m <= limit[c] for c, m in queued.items()):
        if len(queued) == 1:  # one shape: fits when no larger than its limit
            fits = gpus <= next(iter(limit.values()))
        else:
            accel, topo = q.accel[rest], q.topo[rest]
            fits = np.zeros(n, dtype=bool)
            for (a, t), lim in limit.items():
                fits |= (accel == a) & (topo == t) & (gpus <= lim)
        masks.append(fits)
    if p.backfill and ctx.claimed > 0:
        backfills = (gpus <= ctx.claimed) & (ctx.now + q.runtime[rest] <= ctx.latest_reservation)
        if np.count_nonzero(backfills):  # else no job qualifies by backfill, now or later in the scan
            masks.append(backfills)
        else:
            backfills = None
    if ctx.reclaim_left > 0 and preemption.reclaim_possible(ctx.s):
        reclaims = (q.prio[rest] == int(PriorityClass.URGENT)) | (gpus <= preemption.headroom(ctx)[q.tenant[rest]])
        masks.append(reclaims)
    if p.reserve and q.classes() - ctx.reserved_classes:
        prio = q.prio[rest]
        heads = np.zeros(n, dtype=bool)
        for c in sorted(set(prio.tolist()) - ctx.reserved_classes):
            heads[int((prio == c).argmax())] = True
        masks.append(heads)
    admitted = np.zeros(n, dtype=bool)
    if masks:
        look = np.logical_or.reduce(masks).nonzero()[0] if len(masks) > 1 else masks[0].nonzero()[0]
        only_fits = fits is not None and len(masks) == 1 and len(queued) == 1
        if look.shape[0] and only_fits:
            admit_fitting(ctx, rest, look, gpus[look], next(iter(queued)), admitted)
        elif look.shape[0]:
            admit_tail(ctx, Tail.of(ctx, rest, look, fits, backfills, reclaims, heads), admitted)
    if ctx.explain:
        waiting = rest[~admitted]
        ctx.tail = (waiting, steps.bulk_reasons(ctx, waiting))


@dataclass
class Tail:
    """The tail jobs worth a look (``rest[look]``), in queue order, with what the scan
    reads of them; the masks are over those jobs."""

    look: IntArray
    slots: IntArray
    gpus: IntArray
    accel: IntArray
    shapes: list[tuple[int, int]]  # (type or -1, topology code)
    shape_ix: IntArray  # each job's index into shapes
    ends: np.ndarray  # when each would end if it started now
    fits: Mask | None
    backfills: Mask | None
    reclaims: Mask | None
    heads: Mask | None

    @property
    def n(self) -> int:
        return int(self.slots.shape[0])

    @classmethod
    def of(cls, ctx: CycleContext, rest: IntArray, look: IntArray, fits: Mask | None,
           backfills: Mask | None, reclaims: Mask | None, heads: Mask | None) -> Tail:
        q = ctx.s.queue
        slots = rest[look]
        accel = q.accel[slots]
        queued = q.smallest()
        if len(queued) == 1:  # one shape in the whole queue: the usual case
            shapes, shape_ix = list(queued), np.zeros(slots.shape[0], dtype=np.int64)
        else:
            code = accel * len(_WISHES) + q.topo[slots]
            uniq, shape_ix = np.unique(code, return_inverse=True)
            shapes = [(int(c) // len(_WISHES), int(c) % len(_WISHES)) for c in uniq.tolist()]

        def pick(m: Mask | None) -> Mask | None:
            return None if m is None else m[look]

        return cls(look, slots, q.gpus[slots], accel, shapes, shape_ix, ctx.now + q.runtime[slots],
                   pick(fits), pick(backfills), pick(reclaims), pick(heads))


def admit_tail(ctx: CycleContext, t: Tail, admitted: Mask) -> None:
    """Admit, in queue order, every job of ``t`` that qualifies when its turn comes:
    the head of a class without a reservation; one that might fit (no larger than its
    shape's limit, see :func:`fit_limits`); while backfill attempts are left, one that
    might backfill; while reclaim attempts are left, one that might reclaim. Stops
    once the cycle has settled."""
    i = 0
    while i < t.n:
        i = _scan(ctx, t, i, admitted)


def admit_fitting(ctx: CycleContext, rest: IntArray, look: IntArray, gpus: IntArray,
                  shape: tuple[int, int], admitted: Mask) -> None:
    """:func:`admit_tail` where only "might fit" can help (no claims to backfill into,
    nothing to reclaim, every class has its reservation) and every queued job has one
    shape: admit, in order, each job no larger than the shape's limit when its turn
    comes. ``look`` indexes the jobs of ``rest`` that were that small at the start."""
    q = ctx.s.queue
    i, n = 0, look.shape[0]
    while i < n:
        limit = fit_limits(ctx, (shape,))
        epoch = _epoch(ctx)
        for c in (gpus[i:] <= limit[shape]).nonzero()[0].tolist():
            j = i + c
            admitted[look[j]] = True
            steps.admit(ctx, q.job(int(rest[look[j]])))
            if ctx.settled:
                return
            if _epoch(ctx) != epoch or fit_limits(ctx, (shape,)) != limit:
                i = j + 1
                break
        else:
            return


def _scan(ctx: CycleContext, t: Tail, i: int, admitted: Mask) -> int:
    """Admit, in order from ``t``'s job ``i``, every job that qualifies; return where to
    scan again once an admission changed what qualifies (``t.n`` when done).

    A job that qualifies only for backfill, whose attempt would give up before placing
    anything, is not admitted where that is provably all admitting it would do
    (:func:`_futile_backfill_is_a_no_op`): it just uses up its attempt of the budget,
    in its turn, as admitting it would."""
    s = ctx.s
    st = s.state
    limit = fit_limits(ctx, t.shapes)
    other = _other(ctx, t, i, limit)
    quick = t.backfills is not None and _futile_backfill_is_a_no_op(ctx)
    ok, futile = other, None
    if t.backfills is not None and ctx.backfill_left > 0:
        bf = t.backfills[i:]
        if quick:  # only jobs that some claiming reservation starts after, and enough GPUs
            last = max((r.start for r in ctx.reservations if r.claimed), default=-np.inf)
            if len(t.shapes) == 1:  # one type for all: one free count
                a = t.shapes[0][0]
                free: np.ndarray | int = st.free_total if a < 0 else int(st.accel_free[a])
            else:
                free = np.where(t.accel[i:] < 0, st.free_total, st.accel_free[np.maximum(t.accel[i:], 0)])
            real = bf & (t.ends[i:] <= last) & (t.gpus[i:] <= free + ctx.claimed)
            futile, ok = bf & ~real & ~other, other | real
        else:
            ok = other | bf
    cand = ok.nonzero()[0]
    spent = futile.cumsum() if futile is not None else None  # futile jobs up to each position
    charged = 0
    epoch = _epoch(ctx)
    for c, oth in zip(cand.tolist(), other[cand].tolist(), strict=True):
        if spent is not None:
            due = int(spent[c]) - charged
            if due >= ctx.backfill_left:  # the budget runs out on a futile job: rescan after it
                at = int(spent.searchsorted(charged + ctx.backfill_left))
                ctx.backfill_left = 0
                return i + at + 1
            ctx.backfill_left -= due
            charged += due
        j = i + c
        job = s.queue.job(int(t.slots[j]))
        if quick and not oth and steps.backfill_gives_up(ctx, job):
            ctx.backfill_left -= 1  # its attempt, as admitting it would use
            if ctx.backfill_left <= 0:
                return j + 1
            continue
        admitted[t.look[j]] = True
        steps.admit(ctx, job)
        if ctx.settled:
            return t.n
        if _epoch(ctx) != epoch or fit_limits(ctx, t.shapes) != limit:
            return j + 1
    return t.n


def _other(ctx: CycleContext, t: Tail, i: int, limit: dict[tuple[int, int], int]) -> Mask:
    """From job ``i`` on: the jobs that qualify other than by backfill (head of a class,
    might fit now, might reclaim)."""
    out = np.zeros(t.n - i, dtype=bool) if t.heads is None else t.heads[i:]
    if t.fits is not None:
        if len(t.shapes) == 1:
            fit = t.fits[i:] & (t.gpus[i:] <= limit[t.shapes[0]])
        else:
            lim = np.array([limit[c] for c in t.shapes], dtype=np.int64)
            fit = t.fits[i:] & (t.gpus[i:] <= lim[t.shape_ix[i:]])
        out = fit if t.heads is None else out | fit
    if t.reclaims is not None and ctx.reclaim_left > 0:
        out = out | t.reclaims[i:]
    return out


def _epoch(ctx: CycleContext) -> tuple[int, int, bool, bool]:
    """What the masks read that an admission can change, besides the failed sizes."""
    return ctx.s.state.version, len(ctx.reservations), ctx.backfill_left > 0, ctx.reclaim_left > 0


def _futile_backfill_is_a_no_op(ctx: CycleContext) -> bool:
    """Admitting a job that qualifies only for backfill, and whose attempt gives up
    before placing anything, does nothing but use up the attempt: no explanations are
    kept, no limit can stop it first (no borrow or lend limits), placement already
    failed for its size, reclaim cannot act (no guarantees, no urgent job, nothing
    reclaiming), and every priority class has its reservation."""
    s, p = ctx.s, ctx.policy
    return not (ctx.explain or s.tree.limited or preemption.may_preempt(s)
                or (p.reserve and not s.queue.classes() <= ctx.reserved_classes))


def fit_limits(ctx: CycleContext, shapes: Iterable[tuple[int, int]]) -> dict[tuple[int, int], int]:
    """Per shape (type, or -1 for any; topology code): the largest job still worth a
    placement attempt, given free GPUs and the smallest size that already failed."""
    st, fail_min = ctx.s.state, ctx.fail_min
    out = {}
    for a, t in shapes:
        free = st.free_total if a < 0 else int(st.accel_free[a])
        out[(a, t)] = min(free, fail_min.get((None if a < 0 else a, _WISHES[t]), 1 << 62) - 1)
    return out
