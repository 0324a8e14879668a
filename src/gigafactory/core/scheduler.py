"""The scheduler: a deterministic state machine. Events in, decisions out.

Drivers (the digital twin, the control plane) tell it what happened (a job was
submitted, ended, checkpointed; a node went down) and ask it to run a cycle at a
given time. It never reads a clock, does no I/O and holds no global state, so the
same events and times give the same decisions, byte for byte.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from gigafactory.core.backfill import PlanCache
from gigafactory.core.cycle import run_cycle
from gigafactory.core.decisions import Decisions
from gigafactory.core.facility import Facility
from gigafactory.core.jobs import JobSpec, Placement, RunningJob, TopologyWish
from gigafactory.core.placement import FailedPlacements
from gigafactory.core.policies import Policy, get_policy
from gigafactory.core.queue import PendingJob, PendingTable
from gigafactory.core.shares import ShareTree
from gigafactory.core.state import ClusterState


class InvariantError(AssertionError):
    """The scheduler's state is inconsistent (a bug, never a user error)."""


@dataclass(frozen=True)
class SchedulerConfig:
    """Tunables shared by all policies.

    - ``reservation_depth``: blocked jobs that get a reservation per cycle (the head
      of each priority class always gets one);
    - ``reclaim_deadline``: seconds within which an owner under its entitlement gets
      lent capacity back; preemption waits if natural ends free it sooner;
    - ``usage_half_life``: half-life of the decayed usage behind fair share;
    - ``preemption_grace``: seconds a victim is assumed to need to stop;
    - ``max_victims``: most jobs preempted for one job in one cycle;
    - ``reclaim_attempts``: most jobs that may try preemption in one cycle;
    - ``explain``: report every reservation, give every pending job an estimated
      start and a reason, and report entitlements. The twin turns it off for speed;
      then a cycle reports only its starts and preemptions (and its stats), keeps no
      reasons, and stops as soon as nothing more can start or be preempted. Its starts
      and preemptions are exactly those of the explaining cycle.
    """

    reservation_depth: int = 4
    reclaim_deadline: float = 600.0
    usage_half_life: float = 7 * 86400.0
    preemption_grace: float = 60.0
    max_victims: int = 64
    reclaim_attempts: int = 8
    explain: bool = True

    def __post_init__(self) -> None:
        if self.reservation_depth < 0 or self.max_victims < 1 or self.reclaim_attempts < 0:
            raise ValueError("reservation_depth, max_victims and reclaim_attempts must be positive")
        if self.reclaim_deadline < 0 or self.preemption_grace < 0:
            raise ValueError("reclaim_deadline and preemption_grace must not be negative")


class Scheduler:
    """See the module docstring. ``policy`` is a name from :data:`POLICIES` or a Policy."""

    def __init__(
        self,
        facility: Facility,
        tree: ShareTree,
        policy: str | Policy = "gigafactory",
        config: SchedulerConfig | None = None,
        now: float = 0.0,
    ) -> None:
        self.facility = facility
        self.tree = tree
        self.policy = get_policy(policy)
        self.config = config or SchedulerConfig()
        self.state = ClusterState(facility)
        self.pending: dict[str, PendingJob] = {}
        self.queue = PendingTable()
        self.running: dict[str, RunningJob] = {}
        n = len(tree)
        self.used = np.zeros(n)  # GPUs held, per tree node (rolled up)
        self.pending_gpus = np.zeros(n)  # GPUs asked by pending jobs, per project
        self._usage = np.zeros(n)  # decayed GPU-seconds, per project
        self._leaf = self.tree.is_leaf.astype(np.float64)  # 1.0 for projects, else 0.0
        self.now = now
        self.reclaiming: dict[str, tuple[str, ...]] = {}
        self._max_gang: dict[tuple[int | None, str], int] = {}
        self.plans = PlanCache()  # reservation plans of the last cycles (exact re-use)
        self.failed_placements = FailedPlacements()  # gangs that did not fit (exact re-use)

    # ----------------------------------------------------------------- events
    def submit(self, job: JobSpec, attained_service: float = 0.0, now: float | None = None) -> None:
        """Add a pending job. ``ValueError`` names what is wrong with it."""
        if job.id in self.pending or job.id in self.running:
            raise ValueError(f"job {job.id} is already known to the scheduler")
        tenant = self.tree.project(job.project)
        accel = self.facility.accel_id(job.accelerator)
        biggest = self._largest(accel, "pool")
        if job.gpus > biggest:
            where = f"{job.accelerator} " if job.accelerator else ""
            raise ValueError(
                f"job {job.id}: a gang of {job.gpus} GPUs can never run here; the largest "
                f"possible gang is {biggest} {where}GPUs in one site"
            )
        if job.topology is TopologyWish.NVLINK and job.gpus > self.state.node_size_for(accel):
            dom = self._largest(accel, "domain")
            if job.gpus > dom:
                raise ValueError(f"job {job.id}: {job.gpus} GPUs cannot fit in one NVLink domain ({dom} GPUs)")
        if job.topology is TopologyWish.BLOCK:
            blk = self._largest(accel, "block")
            if job.gpus > blk:
                raise ValueError(f"job {job.id}: {job.gpus} GPUs cannot fit in one block ({blk} GPUs)")
        for a in self.tree.path[tenant]:
            if job.gpus > self.tree.cap[a]:
                t = self.tree.specs[a - 1]
                raise ValueError(
                    f"job {job.id}: asks for {job.gpus} GPUs, more than {t.kind.value} {t.name} may "
                    f"ever hold ({int(self.tree.cap[a])}: guarantee + borrow limit)"
                )
        since = job.submit_time if now is None else now
        pj = PendingJob(job, tenant, accel, attained_service, since)
        self.pending[job.id] = pj
        self.queue.add(pj)
        self.pending_gpus[tenant] += job.gpus

    def _largest(self, accel: int | None, level: str) -> int:
        """The facility's largest gang for a type and level (cached: submit is hot in the twin)."""
        key = (accel, level)
        got = self._max_gang.get(key)
        if got is None:
            got = self._max_gang[key] = self.facility.max_gang(accel, level)
        return got

    def remove_pending(self, job_id: str) -> None:
        """Forget a pending job (cancelled or held)."""
        job = self.pending.pop(job_id, None)
        if job is None:
            raise KeyError(f"job {job_id} is not pending")
        self.queue.remove(job)
        self.pending_gpus[job.tenant] -= job.spec.gpus
        self.reclaiming.pop(job_id, None)

    def restore_running(
        self,
        job: JobSpec,
        placement: Placement,
        start_time: float,
        last_checkpoint: float | None = None,
        attained_service: float = 0.0,
    ) -> None:
        """Rebuild a running job (for drivers that reload state from a database)."""
        if job.id in self.pending or job.id in self.running:
            raise ValueError(f"job {job.id} is already known to the scheduler")
        if placement.gpus != job.gpus:
            raise ValueError(f"job {job.id}: placement has {placement.gpus} GPUs, job wants {job.gpus}")
        nodes = np.array([n for n, _ in placement.nodes], dtype=np.int64)
        counts = np.array([c for _, c in placement.nodes], dtype=np.int64)
        tenant = self.tree.project(job.project)
        self.facility.accel_id(job.accelerator)  # a clear error for an unknown type
        rj = RunningJob(job, tenant, nodes, counts, start_time, last_checkpoint, attained_service)
        self._start(rj)

    def _start(self, rj: RunningJob) -> None:
        rj.expected_end = rj.start_time + rj.spec.expected_runtime
        self.state.allocate(rj.nodes, rj.counts, rj.expected_end)
        self.running[rj.spec.id] = rj
        for a in self.tree.path[rj.tenant]:
            self.used[a] += rj.spec.gpus

    def job_ended(self, job_id: str, now: float) -> RunningJob:
        """A running job stopped (completed, failed, cancelled, or preempted): free its GPUs."""
        self._accrue(now)
        rj = self.running.pop(job_id, None)
        if rj is None:
            raise KeyError(f"job {job_id} is not running")
        self.state.release(rj.nodes, rj.counts)
        for a in self.tree.path[rj.tenant]:
            self.used[a] -= rj.spec.gpus
        return rj

    def checkpointed(self, job_id: str, now: float) -> None:
        rj = self.running.get(job_id)
        if rj is None:
            raise KeyError(f"job {job_id} is not running")
        rj.last_checkpoint = now

    def node_down(self, node: int, now: float) -> list[str]:
        """Take a node out of service at once: nothing new is placed on it. Returns the
        running jobs on it, which the driver must end (``job_ended``) and usually
        requeue; the GPUs they give back stay out of service until ``node_up``."""
        self._check_node(node)
        self.state.set_node_up(node, False)
        return sorted(jid for jid, rj in self.running.items() if bool((rj.nodes == node).any()))

    def node_up(self, node: int, now: float) -> None:
        """Return a repaired node to service."""
        self._check_node(node)
        self.state.set_node_up(node, True)

    def _check_node(self, node: int) -> None:
        if not 0 <= node < self.facility.n_nodes:
            raise ValueError(f"node {node} does not exist (0..{self.facility.n_nodes - 1})")

    # ------------------------------------------------------------------ usage
    def _accrue(self, now: float) -> None:
        """Decay usage to ``now`` and add what ran since the last update (exact integral)."""
        dt = now - self.now
        if dt <= 0:
            return
        h = self.config.usage_half_life
        leaf_used = self.used * self._leaf
        if math.isinf(h) or h <= 0:
            leaf_used *= dt
        else:  # usage * k + leaf_used * (h / ln 2) * (1 - k), in place
            k = 0.5 ** (dt / h)
            self._usage *= k
            leaf_used *= h / math.log(2)
            leaf_used *= 1.0 - k
        self._usage += leaf_used
        self.now = now

    @property
    def usage(self) -> dict[str, float]:
        """Decayed GPU-seconds per project, as of the last event or cycle."""
        return {self.tree.names[i]: float(self._usage[i]) for i in range(1, len(self.tree)) if self.tree.is_leaf[i]}

    def set_usage(self, usage: Mapping[str, float]) -> None:
        """Restore decayed usage (for drivers that persist it). Unknown projects are ignored."""
        for name, value in usage.items():
            i = self.tree.index.get(name)
            if i is not None and self.tree.is_leaf[i]:
                self._usage[i] = float(value)

    # ------------------------------------------------------------------ cycle
    def cycle(self, now: float) -> Decisions:
        """Run one scheduling cycle at time ``now``; see :mod:`gigafactory.core.cycle`."""
        if now < self.now:
            raise ValueError(f"time went backwards: cycle at {now} after {self.now}")
        self._accrue(now)
        return run_cycle(self, now)

    def check_invariants(self) -> None:
        from gigafactory.core.invariants import check

        check(self)
