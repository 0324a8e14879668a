"""Reservations and start-time estimates.

A *reservation* is the earliest time a blocked gang could start if running jobs end
as expected (runtime estimate, else walltime limit), and the nodes it would use.
Planning works on ``avail[i]``: the time node ``i`` becomes wholly free (``-inf``
when it is free now). For a gang of ``n`` nodes the start is the ``n``-th smallest
``avail`` among eligible nodes (per block when it wants one block), found with
``np.partition``: linear in nodes, no event-by-event replay.

The reservation *claims* the GPUs of its nodes that are free now, so no later job
in the cycle can take them, except a backfill job that is expected to end before
the reservation starts (see :func:`gigafactory.core.cycle.try_backfill`). That is
why backfill never delays a reservation.

Jobs beyond the reservation depth get a *fluid* estimate: the later of (a) when
enough GPUs are released by running jobs, in aggregate, and (b) when the work queued
ahead of them would drain at full facility capacity.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from gigafactory.core.facility import IntArray
from gigafactory.core.jobs import TopologyWish
from gigafactory.core.state import ClusterState

FloatArray = npt.NDArray[np.float64]


def plan(
    state: ClusterState,
    avail: FloatArray,
    gpus: int,
    accel: int | None,
    wish: TopologyWish,
    now: float,
) -> tuple[float, IntArray, IntArray] | None:
    """Earliest start and whole-node placement for a gang; ``None`` if never possible."""
    f = state.facility
    eligible = state.node_up.copy()
    if accel is not None:
        eligible &= f.node_accel == accel
    if gpus <= state.max_node_gpus:
        ok = eligible & (f.node_gpus >= gpus)
        if not ok.any():
            return None
        a = np.where(ok, avail, np.inf)
        node = int(np.argmin(a))
        if not np.isfinite(a[node]):
            return None
        return max(now, float(a[node])), np.array([node], dtype=np.int64), np.array([gpus], dtype=np.int64)
    best: tuple[float, IntArray] | None = None  # (time, nodes)
    for s, e in _units(state, wish):
        ok = eligible[s:e]
        idx = s + np.flatnonzero(ok)
        if idx.shape[0] == 0:
            continue
        gpn = int(f.node_gpus[idx[0]])
        need = -(-gpus // gpn)
        if idx.shape[0] < need:
            continue
        times = avail[idx]
        t = float(np.partition(times, need - 1)[need - 1])
        if np.isfinite(t) and (best is None or t < best[0]):
            best = (t, _fewest_block_pick(f.node_block, idx[times <= t], need))
    if best is None:
        return None
    t, nodes = best
    gpn = int(f.node_gpus[nodes[0]])
    counts = np.full(nodes.shape[0], gpn, dtype=np.int64)
    rem = gpus - gpn * (nodes.shape[0] - 1)
    counts[-1] = rem
    return max(now, t), nodes, counts


def _units(state: ClusterState, wish: TopologyWish) -> list[tuple[int, int]]:
    """Contiguous node ranges a gang must stay within: NVLink domains, blocks or sites."""
    f = state.facility
    if wish is TopologyWish.BLOCK:
        return list(zip(f.block_start.tolist(), f.block_end.tolist(), strict=True))
    key = f.node_domain if wish is TopologyWish.NVLINK else f.node_site
    ids = np.arange(int(key[-1]) + 1)
    s = np.searchsorted(key, ids, side="left").tolist()
    e = np.searchsorted(key, ids, side="right").tolist()
    return list(zip(s, e, strict=True))


def _fewest_block_pick(node_block: IntArray, ready: IntArray, need: int) -> IntArray:
    """From ready nodes, take ``need`` of them from the blocks holding most ready nodes."""
    blocks, counts = np.unique(node_block[ready], return_counts=True)
    order = blocks[np.argsort(-counts, kind="stable")]
    taken: list[IntArray] = []
    left = need
    for b in order.tolist():
        these = ready[node_block[ready] == b][:left]
        taken.append(these)
        left -= these.shape[0]
        if left == 0:
            break
    return np.sort(np.concatenate(taken)).astype(np.int64)


def fluid_estimates(
    now: float,
    gpus: IntArray,
    work_ahead: FloatArray,
    free_now: int,
    capacity: int,
    release_times: FloatArray,
    release_gpus: IntArray,
) -> FloatArray:
    """Vectorised estimates for jobs in queue order.

    ``work_ahead[i]``: GPU-seconds queued before job ``i`` (reservations included).
    ``release_times``/``release_gpus``: expected ends of running jobs and their sizes.
    """
    order = np.argsort(release_times, kind="stable")
    t_sorted = release_times[order]
    freed = free_now + np.cumsum(release_gpus[order])
    # First release after which at least `gpus` are free in aggregate.
    pos = np.searchsorted(freed, gpus, side="left")
    if t_sorted.shape[0]:
        at = t_sorted[np.minimum(pos, t_sorted.shape[0] - 1)]
        t_fit = np.where(gpus <= free_now, now, np.where(pos < t_sorted.shape[0], at, np.inf))
    else:
        t_fit = np.where(gpus <= free_now, now, np.inf)
    drain = now + work_ahead / max(capacity, 1)
    return np.maximum(np.maximum(t_fit, drain), now)
