"""Workloads as the twin replays them: one column per job attribute (NumPy arrays).

A :class:`Workload` is columnar so that a million jobs cost a few tens of MiB and
no Python object per job exists until the job arrives: the driver builds each
:class:`~gigafactory.core.jobs.JobSpec` at its arrival (:meth:`Workload.job_spec`).

Workloads come from a canonical trace (:func:`from_trace`, via
:func:`gigafactory.twin.traces.schema.read_trace`) or from the synthetic generator
(:mod:`gigafactory.twin.synthetic`). A trace names *tenants*; each becomes a project
of the share tree. By default the tree is built from the trace's tenants (one
partner per tenant, equal weights, no guarantee); with a tree file
(:mod:`gigafactory.twin.tree_files`) every tenant must be a project in it.

Planning estimates: ``runtime_estimate`` is the true duration when
``estimates="exact"`` (the default; users' estimates are notoriously poor, so this
is the *optimistic* bound for reservation-based policies) and absent with
``estimates="none"``. The walltime limit is twice the duration rounded up to a
whole minute, so no job in the twin hits its limit.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from gigafactory.core.jobs import JobSpec, PriorityClass, TopologyWish
from gigafactory.core.shares import TenantKind, TenantSpec

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

ESTIMATES = ("exact", "none")
WALLTIME_FACTOR = 2.0
UNCLASSIFIED = "unclassified"


class WorkloadError(ValueError):
    """A workload cannot be built; the message is one line naming the input."""


@dataclass
class Workload:
    """Jobs as columns, sorted by submit time. Index ``i`` is the job's number."""

    name: str
    submit: FloatArray
    gpus: IntArray
    duration: FloatArray
    project: IntArray  # index into ``projects``
    projects: list[str]
    kind: IntArray  # index into ``kinds``
    kinds: list[str]
    priority: IntArray  # PriorityClass values
    checkpoint_interval: FloatArray  # NaN: the job cannot checkpoint
    topology: IntArray  # index into TOPOLOGIES
    accelerator: IntArray  # index into ``accelerators``; -1 = any
    accelerators: list[str] = field(default_factory=list)
    ids: list[str] | None = None  # None: ids are "j<number>"
    recorded_start: FloatArray | None = None
    recorded_end: FloatArray | None = None
    tree: list[TenantSpec] | None = None  # a tree that comes with the workload
    notes: list[str] = field(default_factory=list)  # assumptions made building it
    skipped: Counter[str] = field(default_factory=Counter)
    estimates: str = "exact"
    window: tuple[float, float] | None = None  # arrival window, when the source defines one

    def __post_init__(self) -> None:
        n = self.submit.shape[0]
        for name in ("gpus", "duration", "project", "kind", "priority",
                     "checkpoint_interval", "topology", "accelerator"):
            if getattr(self, name).shape[0] != n:
                raise WorkloadError(f"workload {self.name}: column {name} has the wrong length")
        if n and np.any(np.diff(self.submit) < 0):
            raise WorkloadError(f"workload {self.name}: jobs must be sorted by submit time")
        if self.estimates not in ESTIMATES:
            raise WorkloadError(
                f"estimates must be one of {', '.join(ESTIMATES)}, got {self.estimates!r}"
            )

    def __len__(self) -> int:
        return int(self.submit.shape[0])

    def job_id(self, i: int) -> str:
        return self.ids[i] if self.ids is not None else f"j{i}"

    @property
    def work_gpu_seconds(self) -> float:
        """Total GPU-seconds the jobs ask for (each job's own runtime × its GPUs)."""
        return float(np.dot(self.gpus.astype(np.float64), self.duration))

    def offered_load(self, capacity_gpus: int) -> float:
        """Work over capacity during the arrival window (``window``, else first to last submission).

        A workload whose jobs all arrive at one instant has no window; its load is
        measured over the longest job instead.
        """
        if not len(self):
            return 0.0
        if self.window is not None:
            span = self.window[1] - self.window[0]
        else:
            span = float(self.submit[-1] - self.submit[0])
        if span <= 0:
            span = float(self.duration.max())
        return self.work_gpu_seconds / (capacity_gpus * span)

    def job_spec(self, i: int) -> JobSpec:
        """The job as the scheduling core sees it (built on arrival; columns cached as lists)."""
        c = self._columns()
        dur = c["duration"][i]
        ckpt = c["ckpt"][i]
        accel = c["accel"][i]
        return JobSpec(
            id=self.ids[i] if self.ids is not None else f"j{i}",
            project=c["project"][i],
            gpus=c["gpus"][i],
            submit_time=c["submit"][i],
            walltime=walltime_for(dur),
            runtime_estimate=dur if self.estimates == "exact" else None,
            accelerator=self.accelerators[accel] if accel >= 0 else None,
            topology=TOPOLOGIES[c["topology"][i]],
            priority=_PRIORITY[c["priority"][i]],
            checkpointable=ckpt == ckpt,  # not NaN
            checkpoint_interval=ckpt if ckpt == ckpt else None,
            oracle_runtime=dur,
        )

    def _columns(self) -> dict[str, list[Any]]:
        cols = self.__dict__.get("_cols")
        if cols is None:
            names = self.projects
            cols = {
                "duration": self.duration.tolist(), "ckpt": self.checkpoint_interval.tolist(),
                "accel": self.accelerator.tolist(), "project": [names[k] for k in self.project.tolist()],
                "gpus": self.gpus.tolist(), "submit": self.submit.tolist(),
                "topology": self.topology.tolist(), "priority": self.priority.tolist(),
            }
            self.__dict__["_cols"] = cols
        return cols

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_cols", None)  # rebuilt on demand; keeps pickles (compare) small
        return state

    def select(self, keep: npt.NDArray[np.bool_]) -> Workload:
        """A copy with only the jobs where ``keep`` is true (order kept)."""
        def cut(a: FloatArray | None) -> FloatArray | None:
            return None if a is None else a[keep]

        return Workload(
            name=self.name, submit=self.submit[keep], gpus=self.gpus[keep],
            duration=self.duration[keep], project=self.project[keep], projects=self.projects,
            kind=self.kind[keep], kinds=self.kinds, priority=self.priority[keep],
            checkpoint_interval=self.checkpoint_interval[keep], topology=self.topology[keep],
            accelerator=self.accelerator[keep], accelerators=self.accelerators,
            ids=None if self.ids is None else [x for x, k in zip(self.ids, keep.tolist(), strict=True) if k],
            recorded_start=cut(self.recorded_start), recorded_end=cut(self.recorded_end),
            tree=self.tree, notes=list(self.notes), skipped=Counter(self.skipped),
            estimates=self.estimates, window=self.window,
        )


TOPOLOGIES: tuple[TopologyWish, ...] = tuple(TopologyWish)
_PRIORITY: dict[int, PriorityClass] = {int(p): p for p in PriorityClass}


def walltime_for(duration: float) -> float:
    """The walltime limit the twin gives a job: twice its runtime, in whole minutes."""
    return max(60.0, math.ceil(duration * WALLTIME_FACTOR / 60.0) * 60.0)


def _codes(series: pd.Series) -> tuple[IntArray, list[str]]:
    """Factorise a string column into sorted category names and int codes (-1 = missing)."""
    codes, uniques = pd.factorize(series, sort=True, use_na_sentinel=True)
    return codes.astype(np.int64), [str(u) for u in uniques]


def from_trace(path: str | Path, *, skip_invalid: bool = False, estimates: str = "exact") -> Workload:
    """Read a canonical trace file into a workload (one clear error line on bad input)."""
    from gigafactory.twin.traces.schema import TraceError, read_trace

    try:
        load = read_trace(path, skip_invalid=skip_invalid)
    except TraceError as exc:
        raise WorkloadError(str(exc)) from None
    return from_frame(load.df, name=Path(path).name, skipped=load.skipped, estimates=estimates)


def from_frame(
    df: pd.DataFrame, *, name: str, skipped: Counter[str] | None = None, estimates: str = "exact"
) -> Workload:
    """Map a canonical trace table (already validated and sorted) to a workload."""
    n = len(df)
    project, projects = _codes(df["tenant"])
    kinds_s = df["kind"] if "kind" in df.columns else pd.Series(pd.NA, index=df.index, dtype="string")
    kind, kinds = _codes(kinds_s.fillna("unknown"))
    prio = np.full(n, int(PriorityClass.NORMAL), dtype=np.int64)
    if "priority" in df.columns:
        pr = df["priority"].fillna("normal").str.lower()
        for p in PriorityClass:
            prio[(pr == p.label).to_numpy(dtype=bool)] = int(p)
    accel = np.full(n, -1, dtype=np.int64)
    accels: list[str] = []
    if "accelerator" in df.columns and df["accelerator"].notna().any():
        accel, accels = _codes(df["accelerator"])
    ckpt = (
        df["checkpoint_interval"].to_numpy(dtype=np.float64, na_value=np.nan)
        if "checkpoint_interval" in df.columns
        else np.full(n, np.nan)
    )

    def opt(col: str) -> FloatArray | None:
        if col not in df.columns or df[col].isna().all():
            return None
        out: FloatArray = df[col].to_numpy(dtype=np.float64, na_value=np.nan)
        return out

    notes = [
        f"trace {name}: {n} jobs; tenants become projects",
        "runtime estimates are exact (the recorded duration)"
        if estimates == "exact"
        else "no runtime estimates: reservations plan with the walltime limit",
        f"walltime limit = {WALLTIME_FACTOR:g} x duration, rounded up to a minute",
    ]
    skipped = Counter(skipped or {})
    if skipped:
        notes.append(
            "skipped trace rows: " + ", ".join(f"{k}: {v}" for k, v in sorted(skipped.items()))
        )
    return Workload(
        name=name,
        submit=df["submit_time"].to_numpy(dtype=np.float64),
        gpus=df["gpus"].to_numpy(dtype=np.int64),
        duration=df["duration"].to_numpy(dtype=np.float64),
        project=project,
        projects=projects,
        kind=kind,
        kinds=kinds,
        priority=prio,
        checkpoint_interval=ckpt,
        topology=np.zeros(n, dtype=np.int64),
        accelerator=accel,
        accelerators=accels,
        ids=df["job_id"].astype(str).tolist(),
        recorded_start=opt("recorded_start"),
        recorded_end=opt("recorded_end"),
        notes=notes,
        skipped=skipped,
        estimates=estimates,
    )


def tree_from_projects(projects: list[str]) -> list[TenantSpec]:
    """The default share tree for a trace: one partner per tenant, equal weights.

    Each tenant is a partner *and* its own project (a leaf). No one has a guarantee,
    so the policy's fair share alone divides the facility.
    """
    return [TenantSpec(name=p, kind=TenantKind.PARTNER, weight=1.0) for p in projects]
