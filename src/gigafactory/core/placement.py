"""Gang, topology-aware placement on aggregated free counts.

Rules, in order:

1. A gang that fits on one node runs on one node: the partly used node with the
   fewest free GPUs that still fits (best fit), else a wholly free node in the block
   with the fewest wholly free nodes (so whole blocks stay free for big gangs).
2. A bigger gang takes whole nodes (plus one partly used node for a remainder) in the
   smallest level that fits: one NVLink domain, then one rack, then one block. Within
   a level the candidate with the least free capacity that fits is tried first.
3. A gang larger than a block (or when no single block fits) spans the fewest blocks
   of one pool: blocks with the most wholly free nodes first.

Gangs stay within one *pool* (identical nodes of one accelerator type in one site),
so they never span sites, accelerator types or node sizes. All-or-nothing: either a
full placement is returned or ``None``.
"""

from __future__ import annotations

import numpy as np

from gigafactory.core.facility import IntArray
from gigafactory.core.jobs import TopologyWish
from gigafactory.core.state import ClusterState

Alloc = tuple[IntArray, IntArray]
_CANDIDATES = 4  # candidates tried per level before moving up a level


def place(state: ClusterState, gpus: int, accel: int | None, wish: TopologyWish) -> Alloc | None:
    """Find a placement for a gang of ``gpus`` GPUs, or ``None`` if none exists now."""
    if gpus > state.free_for(accel):
        return None
    if gpus <= state.node_size_for(accel):
        single = _single_node(state, gpus, accel)
        if single is not None or gpus <= state.min_node_size_for(accel):
            return single  # it fits on one node of every eligible pool: never spans nodes
    if state.whole_nodes(accel) < gpus // state.node_size_for(accel):
        return None  # every way below takes at least this many wholly free nodes
    for level in ("domain", "rack", "block"):
        if level != "domain" and wish is TopologyWish.NVLINK:
            return None
        got = _within_one(state, level, gpus, accel)
        if got is not None:
            return got
    if wish in (TopologyWish.NVLINK, TopologyWish.BLOCK):
        return None
    return _fewest_blocks(state, gpus, accel)


def _single_node(state: ClusterState, gpus: int, accel: int | None) -> Alloc | None:
    f = state.facility
    node = state.best_partial_node(gpus, accel)
    if node < 0:
        if not state.whole_nodes(accel):
            return None  # no partly used node fits and no node is wholly free
        ok = (state.block_whole > 0) & (f.block_node_gpus >= gpus)
        if accel is not None:
            ok &= f.block_accel == accel
        blocks = ok.nonzero()[0]
        if blocks.shape[0] == 0:
            return None
        b = int(blocks[state.block_whole[blocks].argmin()])
        s, e = int(f.block_start[b]), int(f.block_end[b])
        whole = (state.node_free[s:e] == f.node_gpus[s:e]) & state.node_up[s:e]
        node = s + int(whole.argmax())
    return np.array([node], dtype=np.int64), np.array([gpus], dtype=np.int64)


def _level_free(state: ClusterState, level: str) -> IntArray:
    return {"domain": state.domain_free, "rack": state.rack_free, "block": state.block_free}[level]


def _within_one(state: ClusterState, level: str, gpus: int, accel: int | None) -> Alloc | None:
    """Best-fit unit of one level (domain, rack or block) with enough free GPUs *and*
    enough wholly free nodes to hold the gang."""
    f = state.facility
    start, end = state.ranges[level]
    free = _level_free(state, level)
    ok = free >= gpus
    if accel is not None:
        ok &= f.node_accel[start] == accel
    cand = ok.nonzero()[0]
    if cand.shape[0] == 0:
        return None
    if level == "block":
        whole = state.block_whole[cand]
    else:
        is_whole = ((state.node_free == f.node_gpus) & state.node_up).astype(np.int64)
        whole = np.add.reduceat(is_whole, start)[cand]
    cand = cand[whole >= gpus // f.node_gpus[start[cand]]]
    order = cand[free[cand].argsort(kind="stable")[:_CANDIDATES]]
    for u in order.tolist():
        got = _fill_range(state, int(start[u]), int(end[u]), gpus)
        if got is not None:
            return got
    return None


def _fill_range(state: ClusterState, s: int, e: int, gpus: int) -> Alloc | None:
    """Whole nodes of ``[s, e)`` plus one best-fit node for the remainder."""
    f = state.facility
    free = state.node_free[s:e]
    cap = f.node_gpus[s:e]
    up = state.node_up[s:e]
    gpn = int(cap[0])
    n_whole, rem = divmod(gpus, gpn)
    whole = ((free == cap) & up).nonzero()[0]
    if whole.shape[0] < n_whole:
        return None
    nodes = whole[:n_whole]
    counts = np.full(n_whole, gpn, dtype=np.int64)
    if rem:
        part = ((free >= rem) & (free < cap) & up).nonzero()[0]
        if part.shape[0]:
            extra = int(part[free[part].argmin()])
        elif whole.shape[0] > n_whole:
            extra = int(whole[n_whole])
        else:
            return None
        nodes = np.append(nodes, extra)
        counts = np.append(counts, rem)
    order = nodes.argsort()
    return (nodes[order] + s).astype(np.int64), counts[order]


def _fewest_blocks(state: ClusterState, gpus: int, accel: int | None) -> Alloc | None:
    """Span the fewest blocks of one pool: blocks with most wholly free nodes first."""
    f = state.facility
    best: tuple[int, int, list[int]] | None = None  # (blocks needed, pool, blocks)
    for p in range(f.n_pools):
        if accel is not None and f.pool_accel(p) != accel:
            continue
        blocks = ((f.block_pool == p) & (state.block_whole > 0)).nonzero()[0]
        if blocks.shape[0] == 0:
            continue
        gpn = int(f.node_gpus[f.pool_start[p]])
        need_nodes = -(-gpus // gpn)
        order = blocks[(-state.block_whole[blocks]).argsort(kind="stable")]
        k = int(state.block_whole[order].cumsum().searchsorted(need_nodes)) + 1
        if k <= order.shape[0] and (best is None or k < best[0]):
            best = (k, p, order[:k].tolist())
    if best is None:
        return None
    _, pool, chosen = best
    gpn = int(f.node_gpus[f.pool_start[pool]])
    n_whole, rem = divmod(gpus, gpn)
    picked: list[IntArray] = []
    left = n_whole + (1 if rem else 0)
    for b in chosen:
        s, e = int(f.block_start[b]), int(f.block_end[b])
        whole = s + ((state.node_free[s:e] == f.node_gpus[s:e]) & state.node_up[s:e]).nonzero()[0]
        take = whole[:left]
        picked.append(take)
        left -= take.shape[0]
        if left == 0:
            break
    if left:
        return None
    nodes = np.concatenate(picked).astype(np.int64)
    counts = np.full(nodes.shape[0], gpn, dtype=np.int64)
    if rem:
        counts[-1] = rem
    order = nodes.argsort()
    return nodes[order], counts[order]


class FailedPlacements:
    """Gang shapes that found no placement, this cycle and the last, keyed by the free
    and up state of every node (all that :func:`place` reads that can change): a
    head-of-queue gang that did not fit is not searched for again while nothing
    changed. Exact: a hit is a state in which :func:`place` returned ``None``. Only
    shapes that failed lately pay for building the key."""

    def __init__(self) -> None:
        self._cur: set[tuple[object, ...]] = set()
        self._prev: set[tuple[object, ...]] = set()
        self._shapes: set[tuple[int, int | None, TopologyWish]] = set()
        self._shapes_prev: set[tuple[int, int | None, TopologyWish]] = set()

    def rotate(self) -> None:
        """A new cycle: forget failures older than the last cycle."""
        self._prev, self._cur = self._cur, set()
        self._shapes_prev, self._shapes = self._shapes, set()

    def place(self, state: ClusterState, gpus: int, accel: int | None, wish: TopologyWish) -> Alloc | None:
        if gpus > state.free_for(accel):
            return None
        shape = (gpus, accel, wish)
        key = None
        if shape in self._shapes or shape in self._shapes_prev:
            key = (*shape, state.node_free.tobytes(), state.up_version)
            if key in self._cur or key in self._prev:
                self._cur.add(key)
                self._shapes.add(shape)
                return None
        got = place(state, gpus, accel, wish)
        if got is None:
            self._cur.add(key or (*shape, state.node_free.tobytes(), state.up_version))
            self._shapes.add(shape)
        return got
