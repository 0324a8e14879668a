"""What one scheduling cycle decides. Drivers act on these; the core never does I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import NamedTuple

from gigafactory.core.jobs import Placement


class StartJob(NamedTuple):
    """Start ``job_id`` now on ``placement``. ``reason`` says why it could go now.

    (A named tuple, like :class:`PendingStatus` and :class:`CycleStats`: immutable, and
    cheap to build, which matters for records made in every cycle.)"""

    job_id: str
    placement: Placement
    reason: str


@dataclass(frozen=True, slots=True)
class PreemptJob:
    """Stop ``job_id`` (SIGTERM, grace, kill) to make room for ``for_job``.

    ``lost_gpu_seconds`` is the work since its last checkpoint that will be redone.
    """

    job_id: str
    for_job: str
    reason: str
    lost_gpu_seconds: float


@dataclass(frozen=True, slots=True)
class ReserveJob:
    """``job_id`` is planned to start at ``start_time`` on ``placement``.

    A *firm* reservation is never delayed by backfill. A reservation that would take
    its tenant above its entitlement (``firm=False``, borrowing) still holds off
    backfill, but yields to jobs of tenants claiming capacity they are entitled to.
    """

    job_id: str
    start_time: float
    placement: Placement
    firm: bool = True


class PendingStatus(NamedTuple):
    """Why a pending job is not running yet, and when it is expected to start.

    ``estimated_start`` is ``None`` when no start can be foreseen (for example, the
    project is at its borrow limit and nothing it runs has an end time).
    """

    job_id: str
    estimated_start: float | None
    reason: str


class CycleStats(NamedTuple):
    """Counts of one cycle: queue and running jobs after it, what it decided, free GPUs."""

    pending: int = 0
    running: int = 0
    started: int = 0
    preempted: int = 0
    reserved: int = 0
    free_gpus: int = 0


_NO_ENTITLEMENTS: Mapping[str, float] = MappingProxyType({})


class Decisions(NamedTuple):
    """Everything one cycle decided at time ``now``. Lists are in a deterministic order.

    A named tuple: immutable (``entitlements`` is a read-only mapping when a cycle does
    not explain itself), and built in every cycle."""

    now: float
    starts: tuple[StartJob, ...] = ()
    preemptions: tuple[PreemptJob, ...] = ()
    reservations: tuple[ReserveJob, ...] = ()
    pending: tuple[PendingStatus, ...] = ()
    entitlements: Mapping[str, float] = _NO_ENTITLEMENTS
    stats: CycleStats = CycleStats()

    def describe(self) -> list[str]:
        """Human-readable lines, used by the demo and by logs."""
        out = [f"start {s.job_id} on {s.placement.gpus} GPUs: {s.reason}" for s in self.starts]
        out += [f"preempt {p.job_id} for {p.for_job}: {p.reason}" for p in self.preemptions]
        out += [f"reserve {r.job_id} at t={r.start_time:.0f}s" for r in self.reservations]
        out += [f"pending {p.job_id}: {p.reason}" for p in self.pending]
        return out
