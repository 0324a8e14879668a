"""Apply one state transition to one job: compare-and-set on the state, plus an event.

Both the API (cancel, hold, …) and the scheduler loop (start, preempt, exit) go through
:func:`transition`, so the state machine in :mod:`.states` is enforced in one place and
two writers can never both move a job from the same state.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from gigafactory.service.errors import Conflict
from gigafactory.service.jobs.models import Job, JobEvent
from gigafactory.service.jobs.states import IllegalTransition, check


class StaleJob(Conflict):
    """The job's state changed under us (another writer was faster)."""


def transition(
    db: Session,
    job: Job,
    to: str,
    reason: str,
    actor: str,
    now: datetime,
    **changes: Any,
) -> None:
    """Move ``job`` to state ``to`` if legal and if nobody moved it meanwhile.

    Raises :class:`Conflict` (409) for an illegal transition and :class:`StaleJob` when
    the row no longer holds the state we read. ``changes`` are other columns to set in
    the same UPDATE. The event row is added to the session; the caller commits.
    """
    src = job.state
    try:
        check(job.id, src, to)
    except IllegalTransition as exc:
        raise Conflict(str(exc)) from None
    values = {"state": to, "state_reason": reason, **changes}
    result = db.execute(
        update(Job)
        .where(Job.id == job.id, Job.state == src)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise StaleJob(f"job {job.id} changed while we were updating it; retry")
    for key, value in values.items():
        set_committed_value(job, key, value)
    db.add(JobEvent(job_id=job.id, at=now, from_state=src, to_state=to, reason=reason, actor=actor))
