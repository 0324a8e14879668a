"""The pending queue, stored by column so the cycle can sort and scan it with NumPy.

Each pending job has a *slot*: a row in every column array. Removed slots are
reused. Ordering, the saturated tail of a cycle and start-time estimates all work on
these columns; only jobs that may actually start are touched one by one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from gigafactory.core.facility import IntArray
from gigafactory.core.jobs import JobSpec, PriorityClass, TopologyWish

FloatArray = npt.NDArray[np.float64]
TOPOLOGY_CODE = {w: i for i, w in enumerate(TopologyWish)}


@dataclass(slots=True)
class PendingJob:
    spec: JobSpec
    tenant: int
    accel: int | None
    attained_service: float = 0.0
    pending_since: float = 0.0
    slot: int = -1


_INT_COLS = ("gpus", "prio", "tenant", "accel", "topo", "seq", "tclass")
#: priority classes, for the ``tclass`` column (tenant × classes + class)
N_CLASSES = len(PriorityClass)
_FLOAT_COLS = ("submit", "runtime", "oracle", "attained", "since")


class PendingTable:
    """Columns: gpus, prio, tenant, accel (-1 = any), topo, seq (arrival order),
    tclass (tenant × ``N_CLASSES`` + prio: one code per tenant and class), submit,
    runtime (planned), oracle (true runtime or planned), attained, since."""

    def __init__(self, capacity: int = 1024) -> None:
        self._cap = capacity
        self.jobs: list[PendingJob | None] = [None] * capacity
        self.ids: list[str] = [""] * capacity
        self.alive = np.zeros(capacity, dtype=bool)
        for c in _INT_COLS:
            setattr(self, c, np.zeros(capacity, dtype=np.int64))
        for c in _FLOAT_COLS:
            setattr(self, c, np.zeros(capacity, dtype=np.float64))
        self._free: list[int] = list(range(capacity - 1, -1, -1))
        self._seq = 0
        # live slots by arrival (submit time, then sequence), kept up to date lazily
        self._order: IntArray = np.zeros(0, dtype=np.int64)
        self._added: list[int] = []
        self._gone: list[int] = []  # slots removed since the order was last brought up to date
        # per shape (type or -1, topology code): how many pending jobs of each size;
        # per priority class: how many pending jobs (so a cycle can tell cheaply
        # that no queued job could fit, or that every class is present)
        self._sizes: dict[tuple[int, int], dict[int, int]] = {}
        self._classes: dict[int, int] = {}
        self._tenants: dict[int, int] = {}  # pending jobs per tenant
        self._smallest: dict[tuple[int, int], int] | None = None  # cached smallest()
        self._class_set: frozenset[int] = frozenset()  # cached classes()

    # typed views of the columns (set dynamically above)
    gpus: IntArray
    prio: IntArray
    tenant: IntArray
    accel: IntArray
    topo: IntArray
    seq: IntArray
    tclass: IntArray
    submit: FloatArray
    runtime: FloatArray
    oracle: FloatArray
    attained: FloatArray
    since: FloatArray

    def _grow(self) -> None:
        old = self._cap
        new = old * 2
        self.jobs.extend([None] * old)
        self.ids.extend([""] * old)
        self.alive = np.concatenate([self.alive, np.zeros(old, dtype=bool)])
        for c in (*_INT_COLS, *_FLOAT_COLS):
            arr = getattr(self, c)
            setattr(self, c, np.concatenate([arr, np.zeros(old, dtype=arr.dtype)]))
        self._free.extend(range(new - 1, old - 1, -1))
        self._cap = new

    def add(self, job: PendingJob) -> None:
        if not self._free:
            self._grow()
        i = self._free.pop()
        job.slot = i
        spec = job.spec
        self.jobs[i] = job
        self.ids[i] = spec.id
        self.alive[i] = True
        self.gpus[i] = spec.gpus
        self.prio[i] = int(spec.priority)
        self.tenant[i] = job.tenant
        self.tclass[i] = job.tenant * N_CLASSES + int(spec.priority)
        self.accel[i] = -1 if job.accel is None else job.accel
        self.topo[i] = TOPOLOGY_CODE[spec.topology]
        self.seq[i] = self._seq
        self._seq += 1
        self.submit[i] = spec.submit_time
        self.runtime[i] = spec.expected_runtime
        self.oracle[i] = spec.oracle_runtime if spec.oracle_runtime is not None else spec.expected_runtime
        self.attained[i] = job.attained_service
        self.since[i] = job.pending_since
        self._added.append(i)
        self._count(job, (int(self.accel[i]), int(self.topo[i])), 1)

    def remove(self, job: PendingJob) -> None:
        i = job.slot
        self._count(job, (int(self.accel[i]), int(self.topo[i])), -1)
        self.jobs[i] = None
        self.alive[i] = False
        self._free.append(i)
        self._gone.append(i)
        job.slot = -1

    def _count(self, job: PendingJob, shape: tuple[int, int], delta: int) -> None:
        """Add ``delta`` to the job's size (per shape), class and tenant counts; a size
        or class that appears or disappears drops the cached :meth:`smallest` or
        :meth:`classes`."""
        sizes = self._sizes.setdefault(shape, {})
        if _bump(sizes, job.spec.gpus, delta):
            self._smallest = None
            if not sizes:
                del self._sizes[shape]
        if _bump(self._classes, int(job.spec.priority), delta):
            self._class_set = frozenset(self._classes)
        _bump(self._tenants, job.tenant, delta)

    def slots(self) -> IntArray:
        """Live slots, in arrival order: submit time, then sequence number.

        Kept from call to call: removed slots are dropped (before new jobs are added, so
        a reused slot is dropped and then added as its new job), and jobs added since are
        appended when they come after every other (the usual case), else the order is
        rebuilt."""
        order = self._order
        if self._gone:
            gone = self._gone
            if len(gone) == 1:
                order = order[order != gone[0]]
            else:  # a mask by slot (np.isin costs ten times more on a short list)
                dead = np.zeros(self.alive.shape[0], dtype=bool)
                dead[gone] = True
                order = order[~dead[order]]
            self._gone = []
        if self._added:
            sub, seq = self.submit, self.seq
            added = self._added
            if len(added) == 1:  # the usual case: one job since the last call
                new = added if self.alive[added[0]] else []
            else:
                new = sorted({i for i in added if self.alive[i]}, key=lambda i: (sub[i], seq[i]))
            self._added = []
            if new:
                if not order.shape[0] or (sub[new[0]], seq[new[0]]) > (sub[order[-1]], seq[order[-1]]):
                    order = np.concatenate([order, np.array(new, dtype=np.int64)])
                else:
                    live = self.alive.nonzero()[0]
                    order = live[np.lexsort((seq[live], sub[live]))]
        self._order = order
        return order

    def smallest(self) -> dict[tuple[int, int], int]:
        """Per shape (type or -1 for any, topology code): the smallest pending job.
        Kept until a size appears or disappears; callers must not change it."""
        got = self._smallest
        if got is None:
            got = self._smallest = {shape: min(sizes) for shape, sizes in self._sizes.items()}
        return got

    def classes(self) -> frozenset[int]:
        """Priority classes with pending jobs."""
        return self._class_set

    def tenant_count(self) -> int:
        """Tenants with pending jobs."""
        return len(self._tenants)

    def tenants(self) -> list[int]:
        """The tenants with pending jobs (in no particular order)."""
        return list(self._tenants)

    def has_class(self, c: int) -> bool:
        """Some pending job is in priority class ``c``."""
        return c in self._classes

    def check(self) -> None:
        """Recompute the per-shape sizes and the per-class and per-tenant counts from the
        live rows and compare (for invariant checks)."""
        sizes: dict[tuple[int, int], dict[int, int]] = {}
        classes: dict[int, int] = {}
        tenants: dict[int, int] = {}
        for i in self.alive.nonzero()[0].tolist():
            job = self.job(i)
            of = sizes.setdefault((int(self.accel[i]), int(self.topo[i])), {})
            of[job.spec.gpus] = of.get(job.spec.gpus, 0) + 1
            classes[int(job.spec.priority)] = classes.get(int(job.spec.priority), 0) + 1
            tenants[job.tenant] = tenants.get(job.tenant, 0) + 1
        if sizes != self._sizes or classes != self._classes or tenants != self._tenants:
            raise AssertionError("the queue's size, class or tenant counts drifted")

    def job(self, slot: int) -> PendingJob:
        j = self.jobs[slot]
        if j is None:
            raise KeyError(f"slot {slot} is empty")
        return j


def _bump(counts: dict[int, int], key: int, delta: int) -> bool:
    """Add ``delta`` to ``counts[key]``, dropping a count that reaches zero; True when
    the key appeared or disappeared."""
    n = counts.get(key, 0) + delta
    if n:
        counts[key] = n
    else:
        del counts[key]
    return n == delta or not n
