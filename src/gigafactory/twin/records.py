"""The twin's per-job and per-attempt records, turned into tables at the end of a run.

A :class:`~gigafactory.twin.simulate.Simulation` keeps its records in preallocated
typed arrays while it runs; :func:`tables` turns them into the pandas tables of a
:class:`SimResult` (jobs, attempts, outages) once the run is over.
"""

from __future__ import annotations

from array import array
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from gigafactory.twin.config import SimResult
from gigafactory.twin.kernel import EventKind
from gigafactory.twin.prepare import partners_and_classes

if TYPE_CHECKING:
    from gigafactory.twin.simulate import Simulation

#: A job's state in the twin.
FUTURE, PENDING, RUNNING, STOPPING, DONE = 0, 1, 2, 3, 4
#: Why an attempt ended.
COMPLETED, PREEMPTED, FAILED, UNFINISHED = 0, 1, 2, 3
REASONS = ("completed", "preempted", "node-failure", "unfinished")


def tables(sim: Simulation, end: float, wall: float) -> SimResult:
    """The run's records as tables (every attempt already closed)."""
    w = sim.w
    n = sim.n
    a_job = np.frombuffer(sim.a_job, dtype=np.int64) if len(sim.a_job) else np.zeros(0, np.int64)

    def col(arr: array[Any], dtype: type = np.float64) -> np.ndarray:
        return np.frombuffer(arr, dtype=dtype).copy() if len(arr) else np.zeros(0, dtype)

    attempts = pd.DataFrame({
        "job": a_job.copy(),
        "gpus": w.gpus[a_job],
        "queued_since": col(sim.a_queued),
        "start": col(sim.a_start),
        "end": col(sim.a_end),
        "useful_gpu_s": col(sim.a_useful),
        "lost_gpu_s": col(sim.a_lost),
        "overhead_gpu_s": col(sim.a_overhead),
        "reason": pd.Categorical.from_codes(col(sim.a_reason, np.int8), categories=list(REASONS)),
        "watts": np.frombuffer(sim.watts, dtype=np.float64)[a_job] if n else np.zeros(0),
    })
    part, partners, cls, classes = partners_and_classes(sim.tree, w.projects)
    state = np.frombuffer(bytes(sim.state), dtype=np.uint8) if n else np.zeros(0, np.uint8)
    status = np.array(["not-arrived", "pending", "running", "running", "completed"])[state]

    def per_job(values: np.ndarray) -> np.ndarray:
        return np.bincount(a_job, weights=values, minlength=n)

    jobs = pd.DataFrame({
        "job_id": [w.job_id(i) for i in range(n)] if w.ids is None else w.ids,
        "project": pd.Categorical.from_codes(w.project, categories=w.projects),
        "partner": pd.Categorical.from_codes(part[w.project], categories=partners) if n else [],
        "tenant_class": pd.Categorical.from_codes(cls[w.project], categories=classes) if n else [],
        "kind": pd.Categorical.from_codes(w.kind, categories=w.kinds),
        "gpus": w.gpus,
        "submit": w.submit,
        "duration": w.duration,
        "first_start": col(sim.first_start),
        "end": col(sim.end),
        "queued_s": col(sim.queued),
        "preemptions": col(sim.n_preempt, np.int64),
        "failures": col(sim.n_fail, np.int64),
        "useful_gpu_s": per_job(attempts["useful_gpu_s"].to_numpy()),
        "lost_gpu_s": per_job(attempts["lost_gpu_s"].to_numpy()),
        "overhead_gpu_s": per_job(attempts["overhead_gpu_s"].to_numpy()),
        "status": status,
        "pending_since": np.where(state == PENDING, col(sim.queued_since), np.nan),
    })
    if w.recorded_start is not None:
        jobs["recorded_start"] = w.recorded_start
    if w.recorded_end is not None:
        jobs["recorded_end"] = w.recorded_end
    outages = pd.DataFrame({"node": col(sim.o_node, np.int64), "down": col(sim.o_down), "up": col(sim.o_up)})
    counts = {kind.name.lower(): c for kind, c in zip(EventKind, sim.kernel.counts, strict=True)}
    return SimResult(
        facility=sim.facility, tree=sim.tree, workload=w, config=sim.config, jobs=jobs,
        attempts=attempts, outages=outages, end_time=end, events=counts, wall_s=wall,
        stalled=sim.stalled, assumptions=sim.assumptions(), cycles=sim.cycles,
    )
