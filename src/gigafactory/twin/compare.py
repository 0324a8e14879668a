"""Run several policies or facilities on one workload, in parallel processes.

The workload is built once, in the parent, and the same jobs are sent to every run
(a synthetic workload is drawn for the *first* facility: the others replay the same
jobs, which is what a "more chips" what-if needs). Each run writes its own folder
(``OUT/<label>/``: summary.json, jobs.parquet, timeseries.parquet, report.html) and
returns a small :class:`~gigafactory.twin.report.Analysis`; the parent writes one
comparison report (``OUT/report.html``, ``OUT/summary.json``).
"""

from __future__ import annotations

import multiprocessing
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, replace
from pathlib import Path

from gigafactory.core.shares import TenantSpec
from gigafactory.facility_files import load_facility
from gigafactory.twin.report import Analysis, write_compare, write_run
from gigafactory.twin.simulate import SimConfig, simulate
from gigafactory.twin.workload import Workload


@dataclass(frozen=True)
class RunSpec:
    label: str
    facility: str  # preset name or facility file
    policy: str


def plan_runs(facilities: Sequence[str], policies: Sequence[str]) -> list[RunSpec]:
    """Every facility × policy pair, labelled by what varies."""
    if not facilities or not policies:
        raise ValueError("compare needs at least one facility and one policy")
    runs = []
    for f in facilities:
        for p in policies:
            if len(facilities) == 1:
                label = p
            elif len(policies) == 1:
                label = Path(f).stem if Path(f).suffix else f
            else:
                label = f"{p}@{Path(f).stem if Path(f).suffix else f}"
            runs.append(RunSpec(label, f, p))
    labels = [r.label for r in runs]
    if len(set(labels)) != len(labels):
        raise ValueError(f"compare: two runs would share a label ({', '.join(labels)}); give distinct values")
    return runs


def _folder(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.@-]+", "_", label)


def run_one(spec: RunSpec, workload: Workload, tree: list[TenantSpec] | None, tree_name: str,
            config: SimConfig, out: str) -> Analysis:
    """One run in a worker process: simulate, write its folder, return its analysis."""
    facility = load_facility(spec.facility)
    result = simulate(facility, workload, replace(config, policy=spec.policy), tree, tree_name)
    an = write_run(result, Path(out) / _folder(spec.label), spec.label)
    an.timeseries.attrs = {}
    return an


def compare(
    runs: Sequence[RunSpec],
    workload: Workload,
    config: SimConfig,
    out: str | Path,
    tree: list[TenantSpec] | None = None,
    tree_name: str = "the share tree",
    workers: int | None = None,
    on_done: Callable[[RunSpec], None] | None = None,
) -> list[Analysis]:
    """Run every spec (in parallel processes unless ``workers == 1``), then write the report."""
    out = Path(out)
    results: dict[str, Analysis] = {}
    if workers == 1 or len(runs) == 1:
        for spec in runs:
            results[spec.label] = run_one(spec, workload, tree, tree_name, config, str(out))
            if on_done:
                on_done(spec)
    else:
        ctx = multiprocessing.get_context("spawn")  # no fork of a process with threads
        with ProcessPoolExecutor(max_workers=workers or min(len(runs), 4), mp_context=ctx) as pool:
            futures = {pool.submit(run_one, s, workload, tree, tree_name, config, str(out)): s for s in runs}
            for fut in as_completed(futures):
                spec = futures[fut]
                results[spec.label] = fut.result()
                if on_done:
                    on_done(spec)
    ordered = [results[s.label] for s in runs]
    title = f"gigafactory twin: comparison on {workload.name}"
    write_compare(ordered, out, title)
    return ordered
