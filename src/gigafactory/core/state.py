"""Free capacity of the facility, aggregated per topology level.

:class:`ClusterState` keeps, for every node, its free accelerators, and the same
counts summed per NVLink domain, rack, block and accelerator pool, plus the number of
*wholly free* nodes per block. Allocations are applied to these counters directly,
so a placement query never scans accelerators one by one.

Nodes that are partly used are kept in one min-heap per free count (lazy deletion),
so a best-fit node for a small job is found in O(log n).

It also keeps ``node_busy_until``: when each node is expected to be wholly free
again (the latest expected end of the jobs on it), which the reservation planner
reads. For a node shared by several jobs the value is an upper bound after one of
them leaves early; that only makes plans pessimistic, never unsafe.
"""

from __future__ import annotations

import heapq

import numpy as np
import numpy.typing as npt

from gigafactory.core.facility import Facility, IntArray

FloatArray = npt.NDArray[np.float64]

NEG_INF = -np.inf
_FEW = 8  # up to this many nodes, an update is a loop of scalar updates


def raise_to(times: FloatArray, nodes: IntArray, t: float) -> None:
    """``times[nodes] = max(times[nodes], t)`` for distinct nodes (a scalar update for one)."""
    if nodes.shape[0] == 1:
        n = int(nodes[0])
        if t > times[n]:
            times[n] = t
    else:
        times[nodes] = np.maximum(times[nodes], t)


class ClusterState:
    """Mutable free-capacity counters. Owned by one scheduler; copied never."""

    def __init__(self, facility: Facility) -> None:
        f = facility
        self.facility = f
        self.node_free: IntArray = f.node_gpus.copy()
        self.node_up = np.ones(f.n_nodes, dtype=bool)
        self.domain_free: IntArray = np.bincount(f.node_domain, weights=f.node_gpus).astype(np.int64)
        self.rack_free: IntArray = np.bincount(f.node_rack, weights=f.node_gpus).astype(np.int64)
        self.block_free: IntArray = np.bincount(f.node_block, weights=f.node_gpus).astype(np.int64)
        self.block_whole: IntArray = np.bincount(f.node_block).astype(np.int64)
        # wholly free nodes in service, per accelerator type (plain ints, kept with block_whole)
        self._whole_of: list[int] = np.bincount(f.node_accel, minlength=len(f.accel_names)).tolist()
        self.accel_free: IntArray = np.bincount(
            f.node_accel, weights=f.node_gpus, minlength=len(f.accel_names)
        ).astype(np.int64)
        self.node_busy_until = np.full(f.n_nodes, NEG_INF)
        self._free_total = int(self.accel_free.sum())
        self.up_gpus = int(f.node_gpus.sum())  # GPUs of nodes in service
        self.held = np.zeros(f.n_nodes, dtype=np.int64)  # GPUs of down nodes, not in use
        self.max_node_gpus = int(f.node_gpus.max())
        #: largest node per accelerator type (index), for "fits on one node" tests
        self.max_node_gpus_of = {
            a: int(f.node_gpus[f.node_accel == a].max(initial=0)) for a in range(len(f.accel_names))
        }
        self._min_node_gpus = int(f.node_gpus.min())
        self._min_node_gpus_of = {
            a: int(f.node_gpus[f.node_accel == a].min(initial=0)) for a in range(len(f.accel_names))
        }
        #: contiguous node ranges of each topology level: (start, end) arrays
        self.ranges: dict[str, tuple[IntArray, IntArray]] = {"block": (f.block_start, f.block_end),
                                                             "pool": (f.pool_start, f.pool_end)}
        for name, key in (("domain", f.node_domain), ("rack", f.node_rack)):
            ids = np.arange(int(key[-1]) + 1)
            self.ranges[name] = (np.searchsorted(key, ids, side="left").astype(np.int64),
                                 np.searchsorted(key, ids, side="right").astype(np.int64))
        self._units: dict[tuple[str, int | None], list[tuple[int, int, IntArray]]] = {}
        self.down = 0  # nodes out of service
        # heaps[k]: nodes believed to have exactly k free GPUs, 0 < k < node size.
        self._heaps: list[list[int]] = [[] for _ in range(self.max_node_gpus + 1)]
        # per-node topology as plain lists, for scalar updates of a few nodes
        self._cap: list[int] = f.node_gpus.tolist()
        self._dom: list[int] = f.node_domain.tolist()
        self._rack: list[int] = f.node_rack.tolist()
        self._blk: list[int] = f.node_block.tolist()
        self._acc: list[int] = f.node_accel.tolist()
        #: bumped by every change of a free count or of a node's up state, so callers
        #: can tell that nothing a placement reads has changed since they last looked
        #: (a caller that undid its own changes exactly may set it back: see try_backfill)
        self.version = 0
        #: bumped by every change of a node's up state only (cheap cache keys for it)
        self.up_version = 0

    # ------------------------------------------------------------------ queries
    @property
    def free_total(self) -> int:
        return self._free_total

    def free_for(self, accel: int | None) -> int:
        return self._free_total if accel is None else int(self.accel_free[accel])

    def accel_of(self, node: int) -> int:
        """The accelerator type of a node."""
        return self._acc[node]

    def node_size_for(self, accel: int | None) -> int:
        """Largest node of this accelerator type (any type for ``None``)."""
        return self.max_node_gpus if accel is None else self.max_node_gpus_of[accel]

    def min_node_size_for(self, accel: int | None) -> int:
        """Smallest node of this accelerator type (any type for ``None``)."""
        return self._min_node_gpus if accel is None else self._min_node_gpus_of[accel]

    def units(self, level: str, accel: int | None) -> list[tuple[int, int, IntArray]]:
        """The node ranges of one topology level (of one accelerator type, or all), each
        as ``(start, end, node indices)``; built once per level and type."""
        got = self._units.get((level, accel))
        if got is None:
            starts, ends = self.ranges[level]
            f = self.facility
            got = [(s, e, np.arange(s, e, dtype=np.int64))
                   for s, e in zip(starts.tolist(), ends.tolist(), strict=True)
                   if accel is None or int(f.node_accel[s]) == accel]
            for _, _, every in got:
                every.flags.writeable = False  # shared by every plan that reads it
            self._units[(level, accel)] = got
        return got

    def could_place(self, gpus: int, accel: int | None) -> bool:
        """False when provably no gang of ``gpus`` or more GPUs of this type (any type
        for ``None``) can be placed now, whatever its topology wish. A cheap necessary
        condition of :func:`gigafactory.core.placement.place`: enough free GPUs; for a
        gang no bigger than the smallest node, one node with that many free (every
        placement of it uses one node, or a wholly free one); for a bigger gang, the
        wholly free nodes that every multi-node placement takes."""
        if gpus > self.free_for(accel):
            return False
        if gpus <= self.min_node_size_for(accel):  # a wholly free node, or a partly used one
            return self.whole_nodes(accel) > 0 or self.best_partial_node(gpus, accel) >= 0
        return self.whole_nodes(accel) >= gpus // self.node_size_for(accel)

    def whole_nodes(self, accel: int | None) -> int:
        """Wholly free nodes in service (of one accelerator type, or of any)."""
        return sum(self._whole_of) if accel is None else self._whole_of[accel]

    def best_partial_node(self, need: int, accel: int | None) -> int:
        """The partly used node with the fewest free GPUs ≥ ``need`` (lowest index on ties).

        Returns -1 when no partly used node fits. Wholly free nodes are not considered.
        """
        f = self.facility
        free = self.node_free
        for k in range(need, self.max_node_gpus):
            heap = self._heaps[k]
            while heap:
                node = heap[0]
                if free[node] != k or not self.node_up[node] or f.node_gpus[node] == k:
                    heapq.heappop(heap)  # stale entry
                    continue
                break
            if not heap:
                continue
            if accel is None or f.node_accel[heap[0]] == accel:
                return heap[0]
            # Rare path (several accelerator types): the lowest matching valid node.
            match = [n for n in heap if free[n] == k and self.node_up[n] and f.node_accel[n] == accel
                     and f.node_gpus[n] != k]
            if match:
                return min(match)
        return -1

    # ------------------------------------------------------------------ updates
    def allocate(self, nodes: IntArray, counts: IntArray, busy_until: float) -> None:
        """Take ``counts[i]`` GPUs on ``nodes[i]`` (nodes unique)."""
        if nodes.shape[0] == 1:  # the usual one-node job, without array temporaries
            self._apply_few([int(nodes[0])], [-int(counts[0])])
        else:
            self._apply(nodes, -counts)
        raise_to(self.node_busy_until, nodes, busy_until)

    def release(self, nodes: IntArray, counts: IntArray) -> None:
        """Give back GPUs taken by :meth:`allocate` (held instead, on a down node)."""
        if nodes.shape[0] == 1:  # the usual one-node job, without array temporaries
            n = int(nodes[0])
            self._apply_few([n], [int(counts[0])])
            if self.node_free[n] == self._cap[n]:
                self.node_busy_until[n] = NEG_INF
            if not self.node_up[n]:
                self._hold(nodes)
            return
        self._apply(nodes, counts)
        whole = self.node_free[nodes] == self.facility.node_gpus[nodes]
        self.node_busy_until[nodes[whole]] = NEG_INF
        down = ~self.node_up[nodes]
        if np.count_nonzero(down):
            self._hold(nodes[down])

    def _apply(self, nodes: IntArray, delta: IntArray) -> None:
        """Add ``delta[i]`` free GPUs on ``nodes[i]`` (distinct nodes) to every counter;
        an update that would overflow a node raises and changes nothing."""
        if nodes.shape[0] <= _FEW:  # most gangs and claims: scalar updates, no np.add.at
            self._apply_few(nodes.tolist(), delta.tolist())
            return
        f = self.facility
        old = self.node_free[nodes]
        new = old + delta
        caps = f.node_gpus[nodes]
        if (new < 0).any() or (new > caps).any():
            raise ValueError("allocation would over- or under-flow a node's free count")
        self.version += 1
        self.node_free[nodes] = new
        self._free_total += int(delta.sum())
        np.add.at(self.domain_free, f.node_domain[nodes], delta)
        np.add.at(self.rack_free, f.node_rack[nodes], delta)
        np.add.at(self.block_free, f.node_block[nodes], delta)
        np.add.at(self.accel_free, f.node_accel[nodes], delta)
        whole = (new == caps).astype(np.int64) - (old == caps)
        np.add.at(self.block_whole, f.node_block[nodes], whole)
        for a, d in zip(f.node_accel[nodes].tolist(), whole.tolist(), strict=True):
            self._whole_of[a] += d
        partial = (new > 0) & (new < caps)
        for n, k in zip(nodes[partial].tolist(), new[partial].tolist(), strict=True):
            heapq.heappush(self._heaps[k], n)

    def _apply_few(self, nodes: list[int], delta: list[int]) -> None:
        """:meth:`_apply` for a few distinct nodes: all checked first, then applied."""
        free, cap = self.node_free, self._cap
        before = [int(free[n]) for n in nodes]
        for n, b, d in zip(nodes, before, delta, strict=True):
            if not 0 <= b + d <= cap[n]:
                raise ValueError(f"node {n}: free count would become {b + d} (capacity {cap[n]})")
        self.version += 1
        dom, rack, blk, acc = self._dom, self._rack, self._blk, self._acc
        for n, b, d in zip(nodes, before, delta, strict=True):
            after, c = b + d, cap[n]
            free[n] = after
            self._free_total += d
            self.domain_free[dom[n]] += d
            self.rack_free[rack[n]] += d
            self.block_free[blk[n]] += d
            self.accel_free[acc[n]] += d
            if (after == c) != (b == c):
                w = 1 if after == c else -1
                self.block_whole[blk[n]] += w
                self._whole_of[acc[n]] += w
            if 0 < after < c:
                heapq.heappush(self._heaps[after], n)

    def set_node_up(self, node: int, up: bool) -> None:
        """Mark a node up or down. A down node offers no free GPUs: its free GPUs, and
        those its jobs give back as they end, are *held* until it is up again."""
        if bool(self.node_up[node]) == up:
            return
        self.version += 1
        self.up_version += 1
        arr = np.array([node], dtype=np.int64)
        if not up:
            self.node_up[node] = False
            self.down += 1
            self.up_gpus -= int(self.facility.node_gpus[node])
            self._hold(arr)
        else:
            self.node_up[node] = True
            self.down -= 1
            self.up_gpus += int(self.facility.node_gpus[node])
            back = int(self.held[node])
            self.held[node] = 0
            if back:
                self._apply(arr, np.array([back], dtype=np.int64))
            if int(self.node_free[node]) == int(self.facility.node_gpus[node]):
                self.node_busy_until[node] = NEG_INF

    def _hold(self, nodes: IntArray) -> None:
        free = self.node_free[nodes]
        some = free > 0
        if some.any():
            self.held[nodes[some]] += free[some]
            self._apply(nodes[some], -free[some])

    # ------------------------------------------------------------------ checks
    def check(self) -> None:
        """Recompute every aggregate from node counts and compare (for invariant checks)."""
        f = self.facility
        free = self.node_free
        if (free < 0).any() or (free > f.node_gpus).any():
            raise AssertionError("a node's free count is out of range")
        for name, arr, key in (
            ("domain", self.domain_free, f.node_domain),
            ("rack", self.rack_free, f.node_rack),
            ("block", self.block_free, f.node_block),
        ):
            want = np.bincount(key, weights=free, minlength=arr.shape[0]).astype(np.int64)
            if not np.array_equal(want, arr):
                raise AssertionError(f"{name} free counts drifted from node counts")
        whole = np.bincount(f.node_block, weights=(free == f.node_gpus), minlength=f.n_blocks)
        if not np.array_equal(whole.astype(np.int64), self.block_whole):
            raise AssertionError("whole-node counts per block drifted")
        per_accel = np.bincount(f.block_accel, weights=self.block_whole, minlength=len(f.accel_names))
        if per_accel.astype(np.int64).tolist() != self._whole_of:
            raise AssertionError("whole-node counts per accelerator type drifted")
        if int(free.sum()) != self._free_total:
            raise AssertionError("total free count drifted")
        acc = np.bincount(f.node_accel, weights=free, minlength=len(f.accel_names))
        if not np.array_equal(acc.astype(np.int64), self.accel_free):
            raise AssertionError("free counts per accelerator type drifted")
