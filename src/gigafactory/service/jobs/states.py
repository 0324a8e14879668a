"""The job lifecycle as an explicit state machine (DESIGN.md §4).

::

    pending ──► starting ──► running ──► completed | failed | cancelled
       ▲  │         │           │
       │  ▼         ▼           ▼
      held      preempting ◄────┘ ──► requeued ──► starting …
                                       ▲
    failed ────────────────────────────┘   (retry from the checkpoint)

``requeued`` waits like ``pending`` (the scheduler treats both as queued) but records
that the job ran before and will resume from its checkpoint directory. Every accepted
transition is stored as a ``job_events`` row with a reason; anything else is refused.
"""

from __future__ import annotations

from gigafactory.core.jobs import JobState as S

TRANSITIONS: dict[S, frozenset[S]] = {
    S.PENDING: frozenset({S.STARTING, S.HELD, S.CANCELLED}),
    S.REQUEUED: frozenset({S.STARTING, S.HELD, S.CANCELLED}),
    S.HELD: frozenset({S.PENDING, S.CANCELLED}),
    S.STARTING: frozenset({S.RUNNING, S.COMPLETED, S.FAILED, S.CANCELLED, S.PREEMPTING}),
    S.RUNNING: frozenset({S.PREEMPTING, S.COMPLETED, S.FAILED, S.CANCELLED}),
    S.PREEMPTING: frozenset({S.REQUEUED, S.COMPLETED, S.FAILED, S.CANCELLED}),
    S.COMPLETED: frozenset(),
    S.FAILED: frozenset({S.REQUEUED}),
    S.CANCELLED: frozenset(),
}

#: States in which a job waits for the scheduler.
QUEUED = frozenset({S.PENDING, S.REQUEUED})
#: States in which a job has (or is getting) GPUs from an executor.
ACTIVE = frozenset({S.STARTING, S.RUNNING, S.PREEMPTING})
#: States a job never leaves on its own.
FINAL = frozenset({S.COMPLETED, S.FAILED, S.CANCELLED})


class IllegalTransition(ValueError):
    def __init__(self, job_id: int, src: S, dst: S) -> None:
        allowed = ", ".join(sorted(TRANSITIONS[src])) or "none (final state)"
        super().__init__(
            f"job {job_id}: cannot go from {src.value} to {dst.value}; from {src.value} "
            f"it can go to: {allowed}"
        )


def check(job_id: int, src: str, dst: str) -> tuple[S, S]:
    """Validate ``src → dst``; raises :class:`IllegalTransition` when not allowed."""
    a, b = S(src), S(dst)
    if b not in TRANSITIONS[a]:
        raise IllegalTransition(job_id, a, b)
    return a, b
