"""The policy registry: small, named, documented units chosen by name.

A policy says how pending jobs are ordered and which mechanisms of the cycle are on.
Every policy runs the same cycle (:mod:`gigafactory.core.cycle`); limits (borrow
caps) are honoured by all of them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from gigafactory.core.queue import N_CLASSES

if TYPE_CHECKING:
    from gigafactory.core.cycle import CycleContext
    from gigafactory.core.facility import IntArray
    from gigafactory.core.queue import PendingTable

GroupKey = Callable[["CycleContext", "PendingTable", "IntArray"], "np.ndarray"]

#: Tiresias' 2D-LAS queue thresholds in GPU-seconds of attained service.
LAS_THRESHOLDS: tuple[float, ...] = (3_600.0, 36_000.0, 360_000.0)


@dataclass(frozen=True)
class Policy:
    """How the cycle behaves.

    - ``strict``: stop at the first job that cannot start (no job overtakes it);
    - ``reserve``: blocked jobs get reservations (earliest feasible start);
    - ``reservation_depth``: how many (``None``: the scheduler config decides); the
      head of every priority class always gets one;
    - ``backfill``: later jobs may start when they delay no reservation;
    - ``reclaim``: preempt borrowers for owners under their guarantee, and
      ``preemptible`` jobs for ``urgent`` ones;
    - ``shares``: the order or the reclaim reads entitlements and fair share (others
      only compute them when the cycle explains itself);
    - ``ranks_tenants``: the order reads them only to rank tenants against each other,
      so a queue of one tenant's jobs needs none (a cycle that neither explains itself
      nor can reclaim then skips them).

    The order is by ``group`` (one key per queued job, smaller first; ``None``: one
    group), then by arrival: submit time, then the arrival sequence number, so it is
    total and deterministic.
    """

    name: str
    doc: str
    group: GroupKey | None
    strict: bool = False
    reserve: bool = True
    reservation_depth: int | None = None
    backfill: bool = True
    reclaim: bool = False
    shares: bool = False
    ranks_tenants: bool = False


# Group keys: one array over the given queue slots, smaller first; ties go by arrival.
def _gigafactory_group(ctx: CycleContext, q: PendingTable, slots: IntArray) -> np.ndarray:
    # Priority class first; within a class, tenants below their entitlement go before
    # tenants at or above it (as Kueue admits nominal quota before borrowing), then by
    # fair share. The tenants with queued jobs are ranked once per cycle (equal keys
    # share a rank; the others' rank is never looked up).
    n = len(ctx.s.tree)
    rank = [0] * n  # one tenant in the queue: any rank orders its jobs alike
    if q.tenant_count() > 1:
        used, ent, fs = ctx.s.used.tolist(), ctx.ent.tolist(), ctx.fair_share.tolist()
        keys = {t: (used[t] >= ent[t] - 1e-6, -fs[t]) for t in q.tenants()}
        r, last = -1, None
        for t in sorted(keys, key=keys.__getitem__):
            if keys[t] != last:
                r, last = r + 1, keys[t]
            rank[t] = r
    group: np.ndarray = _group_table(tuple(rank))[q.tclass[slots]]
    return group


@functools.lru_cache(maxsize=256)
def _group_table(rank: tuple[int, ...]) -> np.ndarray:
    """The default order's key of every tenant-class code (the queue's ``tclass``) for
    these tenant ranks: one key per tenant and class, looked up once per job. A pure
    function, memoised (tenant ranks seldom change from cycle to cycle); read-only."""
    n = len(rank)
    table = _small(np.array([t - c * n for t in rank for c in range(N_CLASSES)], dtype=np.int64), n * N_CLASSES)
    table.flags.writeable = False
    return table


#: Integer keys known to lie in ``(-_RADIX, _RADIX)`` are kept as int16: NumPy's stable
#: sort is a radix sort for 16-bit integers (the same order, 2-4x faster).
_RADIX = 1 << 15


def _small(keys: np.ndarray, bound: int) -> np.ndarray:
    """Integer keys known to lie in ``(-bound, bound)``, as int16 when that fits."""
    return keys.astype(np.int16) if bound <= _RADIX else keys


def las_queue(attained_gpu_seconds: np.ndarray, thresholds: Sequence[float] = LAS_THRESHOLDS) -> np.ndarray:
    """Tiresias' discretised queue: 0 for the least attained service (GPU-seconds)."""
    return np.searchsorted(np.asarray(thresholds), attained_gpu_seconds, side="right")


def _las_group(ctx: CycleContext, q: PendingTable, slots: IntArray) -> np.ndarray:
    return _small(las_queue(q.attained[slots]), len(LAS_THRESHOLDS) + 1)


def _srtf_group(ctx: CycleContext, q: PendingTable, slots: IntArray) -> np.ndarray:
    remaining: np.ndarray = np.maximum(0.0, q.oracle[slots] - q.attained[slots] / q.gpus[slots])
    return remaining


FIFO = Policy(
    "fifo",
    "Strict first-come first-served: the oldest job goes first and nothing overtakes it.",
    None,
    strict=True,
    backfill=False,
)
EASY_BACKFILL = Policy(
    "easy-backfill",
    "FIFO with EASY backfill: the oldest blocked job gets a reservation; later jobs "
    "start only where they do not delay it.",
    None,
    reservation_depth=1,
)
LAS = Policy(
    "las",
    "Tiresias' two-dimensional least-attained-service: jobs with the least GPU-time "
    "received (GPUs × time, discretised into queues) go first, FIFO within a queue; "
    "work-conserving, without reservations.",
    _las_group,
    reserve=False,
)
SRTF = Policy(
    "srtf",
    "Oracle baseline: shortest remaining runtime first, using the true runtime (known "
    "only in simulation); work-conserving, without reservations.",
    _srtf_group,
    reserve=False,
)
GIGAFACTORY = Policy(
    "gigafactory",
    "The default: priority class, then tenants below their entitlement before those "
    "at or above it, then fair-share factor (decayed usage against the share tree), "
    "then age; topology-aware gangs; reservations with backfill; reclaim "
    "of lent capacity for owners under their entitlement within the reclaim deadline, "
    "choosing victims that lose the least work.",
    _gigafactory_group,
    reclaim=True,
    shares=True,
    ranks_tenants=True,
)

KUBE_DEFAULT = Policy(
    "kube-default",
    "Kubernetes' default scheduler, approximated (for validating the twin against traces "
    "of clusters that ran it): creation order; every job that fits is placed, jobs that "
    "do not fit are skipped (no head-of-line blocking); no reservations, no preemption.",
    None,
    reserve=False,
    backfill=False,
)

#: Every policy, in one explicit list.
POLICIES: dict[str, Policy] = {
    p.name: p for p in (FIFO, EASY_BACKFILL, LAS, SRTF, GIGAFACTORY, KUBE_DEFAULT)
}


def get_policy(name: str | Policy) -> Policy:
    if isinstance(name, Policy):
        return name
    try:
        return POLICIES[name]
    except KeyError:
        raise ValueError(f"unknown policy {name!r}; expected one of {', '.join(POLICIES)}") from None
