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

import math

import numpy as np
import numpy.typing as npt

from gigafactory.core.facility import IntArray
from gigafactory.core.jobs import Placement, TopologyWish
from gigafactory.core.state import ClusterState

FloatArray = npt.NDArray[np.float64]


Plan = tuple[float, IntArray, IntArray]


class PlanCache:
    """Plans of this cycle and the last, so a reservation whose inputs did not change
    is not planned again (most cycles keep the same reservations).

    The key is everything :func:`plan` reads that can change: the gang's shape, the
    raw ``avail`` array and which nodes are up (the state's ``up_version``). ``now``
    only clamps ``avail`` from below, so a plan that starts after ``now`` is the same
    for every earlier ``now``: a cached plan is used only while its start is still in
    the future, and only plans that start in the future are stored. The results are
    exactly :func:`plan`'s. A cached plan's arrays are read-only.
    """

    def __init__(self) -> None:
        self._cur: dict[tuple[object, ...], Plan] = {}
        self._prev: dict[tuple[object, ...], Plan] = {}
        # Placement of a plan's arrays, by their identity (the entry keeps them alive)
        self._where: dict[int, tuple[IntArray, IntArray, Placement]] = {}
        self._where_prev: dict[int, tuple[IntArray, IntArray, Placement]] = {}

    def rotate(self) -> None:
        """A new cycle: forget plans older than the last cycle."""
        self._prev, self._cur = self._cur, {}
        self._where_prev, self._where = self._where, {}

    def placement(self, nodes: IntArray, counts: IntArray) -> Placement:
        """``Placement`` of a plan's nodes and counts, built once while the plan is reused."""
        got = self._where.get(id(nodes)) or self._where_prev.get(id(nodes))
        if got is None or got[0] is not nodes or got[1] is not counts:
            got = (nodes, counts, Placement(tuple(zip(nodes.tolist(), counts.tolist(), strict=True))))
        self._where[id(nodes)] = got
        return got[2]

    def plan(self, state: ClusterState, avail: FloatArray, gpus: int, accel: int | None,
             wish: TopologyWish, now: float) -> Plan | None:
        key = (gpus, accel, wish, avail.tobytes(), state.up_version)
        got = self._cur.get(key) or self._prev.get(key)
        if got is not None and got[0] > now:
            self._cur[key] = got
            return got
        got = plan(state, avail, gpus, accel, wish, now)
        if got is not None and got[0] > now:
            got[1].flags.writeable = got[2].flags.writeable = False
            self._cur[key] = got
        return got


def plan(
    state: ClusterState,
    avail: FloatArray,
    gpus: int,
    accel: int | None,
    wish: TopologyWish,
    now: float,
) -> Plan | None:
    """Earliest start and whole-node placement for a gang; ``None`` if never possible.

    ``avail[i]``: when node ``i`` is expected to be wholly free (``-inf`` when free,
    ``inf`` when down); it is read as ``max(avail, now)``. The gang stays within one
    unit: a pool (any / fewest blocks), a block or an NVLink domain. On a unit whose
    nodes are big enough it takes one node.
    """
    f = state.facility
    avail = np.maximum(avail, now)
    if gpus <= state.node_size_for(accel):
        wish = TopologyWish.ANY  # one node satisfies every wish
    level = {TopologyWish.BLOCK: "block", TopologyWish.NVLINK: "domain"}.get(wish, "pool")
    best: Plan | None = None
    for s, e, every in state.units(level, accel):
        if state.down:
            idx = s + state.node_up[s:e].nonzero()[0]
            if idx.shape[0] == 0:
                continue
            times = avail[idx]
        else:  # every node is up
            idx, times = every, avail[s:e]
        gpn = int(f.node_gpus[s])
        if gpn >= gpus:
            k = int(times.argmin())
            t = float(times[k])
            nodes, counts = idx[k : k + 1], np.array([gpus], dtype=np.int64)
        else:
            need = -(-gpus // gpn)
            if idx.shape[0] < need:
                continue
            part = times.copy()
            part.partition(need - 1)
            t = float(part[need - 1])
            if best is not None and t >= best[0]:
                continue
            nodes = _fewest_block_pick(f.node_block, idx[times <= t], need)
            sizes = [gpn] * need
            sizes[-1] = gpus - gpn * (need - 1)
            counts = np.array(sizes, dtype=np.int64)
        if math.isfinite(t) and (best is None or t < best[0]):
            best = (t, nodes, counts)
    if best is None:
        return None
    t, nodes, counts = best
    return max(now, t), nodes, counts


def _fewest_block_pick(node_block: IntArray, ready: IntArray, need: int) -> IntArray:
    """From ready nodes, take ``need`` of them from the blocks holding most ready nodes."""
    blocks = node_block[ready]
    first = int(blocks.min())
    counts = np.bincount(blocks - first)
    if counts.max() >= need:  # one block holds enough: take them from the fullest one
        b = first + int(counts.argmax())
        picked: IntArray = ready[blocks == b][:need]
        return picked
    order = (-counts).argsort(kind="stable")
    taken: list[IntArray] = []
    left = need
    for b in order.tolist():
        these = ready[blocks == first + b][:left]
        taken.append(these)
        left -= these.shape[0]
        if left == 0:
            break
    picked = np.concatenate(taken).astype(np.int64)
    picked.sort()
    return picked


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
    order = release_times.argsort(kind="stable")
    t_sorted = release_times[order]
    freed = free_now + release_gpus[order].cumsum()
    # First release after which at least `gpus` are free in aggregate.
    pos = np.searchsorted(freed, gpus, side="left")
    if t_sorted.shape[0]:
        at = t_sorted[np.minimum(pos, t_sorted.shape[0] - 1)]
        t_fit = np.where(gpus <= free_now, now, np.where(pos < t_sorted.shape[0], at, np.inf))
    else:
        t_fit = np.where(gpus <= free_now, now, np.inf)
    drain = now + work_ahead / max(capacity, 1)
    return np.maximum(np.maximum(t_fit, drain), now)
