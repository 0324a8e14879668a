"""The policy registry: small, named, documented units chosen by name.

A policy says how pending jobs are ordered and which mechanisms of the cycle are on.
Every policy runs the same cycle (:mod:`gigafactory.core.cycle`); limits (borrow
caps) are honoured by all of them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gigafactory.core.cycle import CycleContext
    from gigafactory.core.scheduler import PendingJob

OrderKey = Callable[["CycleContext", "PendingJob"], tuple[float | int | str, ...]]

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
    - ``reclaim``: preempt borrowers for owners under their entitlement, and
      ``preemptible`` jobs for ``urgent`` ones.
    """

    name: str
    doc: str
    key: OrderKey
    strict: bool = False
    reserve: bool = True
    reservation_depth: int | None = None
    backfill: bool = True
    reclaim: bool = False


def _fifo_key(ctx: CycleContext, job: PendingJob) -> tuple[float | int | str, ...]:
    return (job.spec.submit_time, job.spec.id)


def _gigafactory_key(ctx: CycleContext, job: PendingJob) -> tuple[float | int | str, ...]:
    return (-int(job.spec.priority), -float(ctx.fair_share[job.tenant]), job.spec.submit_time, job.spec.id)


def las_queue(attained_gpu_seconds: float, thresholds: Sequence[float] = LAS_THRESHOLDS) -> int:
    """Tiresias' discretised queue: 0 for the least attained service."""
    q = 0
    for t in thresholds:
        if attained_gpu_seconds < t:
            break
        q += 1
    return q


def _las_key(ctx: CycleContext, job: PendingJob) -> tuple[float | int | str, ...]:
    return (las_queue(job.attained_service), job.spec.submit_time, job.spec.id)


def _srtf_key(ctx: CycleContext, job: PendingJob) -> tuple[float | int | str, ...]:
    spec = job.spec
    total = spec.oracle_runtime if spec.oracle_runtime is not None else spec.expected_runtime
    remaining = max(0.0, total - job.attained_service / spec.gpus)
    return (remaining, spec.submit_time, spec.id)


FIFO = Policy(
    "fifo",
    "Strict first-come first-served: the oldest job goes first and nothing overtakes it.",
    _fifo_key,
    strict=True,
    backfill=False,
)
EASY_BACKFILL = Policy(
    "easy-backfill",
    "FIFO with EASY backfill: the oldest blocked job gets a reservation; later jobs "
    "start only where they do not delay it.",
    _fifo_key,
    reservation_depth=1,
)
LAS = Policy(
    "las",
    "Tiresias' two-dimensional least-attained-service: jobs with the least GPU-time "
    "received (GPUs × time, discretised into queues) go first, FIFO within a queue; "
    "work-conserving, without reservations.",
    _las_key,
    reserve=False,
)
SRTF = Policy(
    "srtf",
    "Oracle baseline: shortest remaining runtime first, using the true runtime (known "
    "only in simulation); work-conserving, without reservations.",
    _srtf_key,
    reserve=False,
)
GIGAFACTORY = Policy(
    "gigafactory",
    "The default: priority class, then fair-share factor (decayed usage against the "
    "share tree), then age; topology-aware gangs; reservations with backfill; reclaim "
    "of lent capacity for owners under their entitlement within the reclaim deadline, "
    "choosing victims that lose the least work.",
    _gigafactory_key,
    reclaim=True,
)

#: Every policy, in one explicit list.
POLICIES: dict[str, Policy] = {p.name: p for p in (FIFO, EASY_BACKFILL, LAS, SRTF, GIGAFACTORY)}


def get_policy(name: str | Policy) -> Policy:
    if isinstance(name, Policy):
        return name
    try:
        return POLICIES[name]
    except KeyError:
        raise ValueError(f"unknown policy {name!r}; expected one of {', '.join(POLICIES)}") from None
