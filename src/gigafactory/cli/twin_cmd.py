"""``gigafactory simulate`` and ``gigafactory compare``: the digital twin from the command line.

``simulate`` replays one workload on one facility with one policy and writes
summary.json, jobs.parquet, timeseries.parquet and report.html into ``--out``,
showing a progress bar (simulated time, events/s, ETA). ``compare`` runs several
policies and/or facilities on the same workload in parallel processes and writes one
comparison report plus one folder per run. User errors print one red ``error:``
line and exit with status 2; no traceback.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from gigafactory.core.scheduler import SchedulerConfig
from gigafactory.core.shares import TenantSpec
from gigafactory.facility_files import FacilityFileError, load_facility
from gigafactory.twin.failures import LLAMA3_NODE_MTBF_H, FailureModel
from gigafactory.twin.simulate import SimConfig, SimulationError, parse_cycle, simulate
from gigafactory.twin.tree_files import TreeFileError, load_tree
from gigafactory.twin.validate import policy_names
from gigafactory.twin.workload import WorkloadError

USER_ERRORS = (WorkloadError, SimulationError, FacilityFileError, TreeFileError, ValueError)

FacilityOpt = Annotated[str, typer.Option(
    "--facility", "-f", help="A preset (gigafactory-100k, ai-factory-25k, dev-32), a YAML/TOML/JSON file, "
    "or nodes:PATH (a node-list CSV with gpu and model columns).")]
WorkloadOpt = Annotated[str, typer.Option(
    "--workload", "-w", help="synthetic:jobs=N,load=L,seed=S,days=D | FORMAT:PATH (a trace importer) | "
    "a canonical trace file (.parquet/.csv).")]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Output folder (created).")]
TreeOpt = Annotated[Path | None, typer.Option(
    "--tree", help="Share-tree file (YAML/TOML/JSON). Default: the synthetic tree, or one partner per "
    "trace tenant with equal weights.")]
CycleOpt = Annotated[str, typer.Option(
    "--cycle", help="When the scheduling cycle runs: 'events' (coalesced per instant), N seconds "
    "(like Slurm's interval), or 'events+N'.")]
FailOpt = Annotated[bool, typer.Option(
    "--failures/--no-failures", help="Random node failures (per-node MTBF, Llama 3 calibrated).")]
MtbfOpt = Annotated[float, typer.Option("--mtbf-hours", help="Per-node mean time between failures.")]
RepairOpt = Annotated[float, typer.Option("--repair-hours", help="Mean node repair time.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of the failure process.")]
UntilOpt = Annotated[float | None, typer.Option("--until", help="Stop at this simulated time (s).")]
SkipOpt = Annotated[bool, typer.Option(
    "--skip-invalid", help="Skip invalid trace rows and jobs the facility can never run, and count them.")]
ValidateOpt = Annotated[bool, typer.Option(
    "--validate/--no-validate", help="Check the core's and the twin's invariants after every event (slow).")]
EstOpt = Annotated[str, typer.Option("--estimates", help="Runtime estimates: exact or none.")]
OverheadOpt = Annotated[float, typer.Option("--start-overhead", help="Seconds from start to useful work.")]
DeadlineOpt = Annotated[float, typer.Option("--reclaim-deadline", help="Seconds (scheduler config).")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary table.")]


def _fail(message: str) -> typer.Exit:
    Console(stderr=True, highlight=False, soft_wrap=True).print(f"[red]error:[/red] {escape(message)}")
    return typer.Exit(2)


def _config(policy: str, cycle: str, failures: bool, mtbf: float, repair: float, seed: int,
            until: float | None, skip: bool, validate: bool, overhead: float, deadline: float) -> SimConfig:
    if policy not in policy_names():
        raise ValueError(f"unknown policy {policy!r}; expected one of {', '.join(policy_names())}")
    on_events, interval = parse_cycle(cycle)
    return SimConfig(
        policy=policy,
        scheduler=SchedulerConfig(reclaim_deadline=deadline, explain=False),
        cycle_on_events=on_events,
        cycle_interval=interval,
        failures=FailureModel(node_mtbf_h=mtbf, repair_h=repair, seed=seed) if failures else None,
        start_overhead=overhead,
        until=math.inf if until is None else until,
        validate=validate,
        skip_invalid=skip,
    )


def _tree(path: Path | None) -> tuple[list[TenantSpec] | None, str]:
    if path is None:
        return None, "the share tree"
    return load_tree(path), str(path)


def _days(seconds: float) -> str:
    return f"{seconds / 86400:.2f} d" if seconds >= 86400 else f"{seconds / 3600:.2f} h"


def _summary_table(rows: list[tuple[str, dict[str, Any]]]) -> Table:
    table = Table(show_header=len(rows) > 1)
    table.add_column("")
    for label, _ in rows:
        table.add_column(label, justify="right")
    keys = [("utilisation", "{:.3f}"), ("utilisation_bound", "{:.3f}"), ("goodput", "{:.3f}"),
            ("jobs_completed", "{:,}"), ("wait_p50_s", "{:,.0f}"), ("wait_p95_s", "{:,.0f}"),
            ("jct_mean_s", "{:,.0f}"), ("jct_bound_mean_s", "{:,.0f}"),
            ("guarantee_violation_gpu_hours", "{:,.1f}"), ("preemptions", "{:,}"),
            ("lost_gpu_hours", "{:,.1f}"), ("energy_kwh", "{:,.0f}"), ("wall_s", "{:.1f}"),
            ("events_per_s", "{:,.0f}")]
    for key, fmt in keys:
        cells = []
        for _, s in rows:
            v = s.get(key)
            cells.append("–" if v is None or (isinstance(v, float) and not math.isfinite(v)) else fmt.format(v))
        table.add_row(key, *cells)
    return table


def simulate_cmd(
    workload: WorkloadOpt,
    facility: FacilityOpt = "gigafactory-100k",
    policy: Annotated[str, typer.Option("--policy", "-p", help=f"One of {', '.join(policy_names())}.")] = "gigafactory",
    out: OutOpt = Path("runs/twin"),
    tree: TreeOpt = None,
    cycle: CycleOpt = "events",
    failures: FailOpt = True,
    mtbf_hours: MtbfOpt = LLAMA3_NODE_MTBF_H,
    repair_hours: RepairOpt = 4.0,
    seed: SeedOpt = 0,
    until: UntilOpt = None,
    skip_invalid: SkipOpt = False,
    validate: ValidateOpt = False,
    estimates: EstOpt = "exact",
    start_overhead: OverheadOpt = 0.0,
    reclaim_deadline: DeadlineOpt = 600.0,
    quiet: QuietOpt = False,
) -> None:
    """Replay a workload on a facility with a scheduling policy; write a report."""
    from gigafactory.twin.inputs import resolve_workload
    from gigafactory.twin.report import write_run

    console = Console(highlight=False, soft_wrap=True)
    try:
        cfg = _config(policy, cycle, failures, mtbf_hours, repair_hours, seed, until, skip_invalid,
                      validate, start_overhead, reclaim_deadline)
        fac = load_facility(facility)
        specs, tree_name = _tree(tree)
        w = resolve_workload(workload, fac, skip_invalid=skip_invalid, estimates=estimates)
        horizon = max(float(w.submit[-1]) if len(w) else 1.0, 1.0)
        with Progress(
            TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[simt]}"),
            TextColumn("{task.fields[eps]}"), TimeRemainingColumn(), console=console,
            disable=quiet, transient=True,
        ) as prog:
            task = prog.add_task("simulating", total=horizon, simt="", eps="")
            started = time.perf_counter()

            def progress(now: float, events: int) -> None:
                rate = events / max(time.perf_counter() - started, 1e-9)
                desc = "simulating" if now <= horizon else "draining"
                prog.update(task, completed=min(now, horizon), description=desc,
                            simt=f"{_days(now)} simulated", eps=f"{rate:,.0f} events/s")

            result = simulate(fac, w, cfg, specs, tree_name, progress=progress)
        if not quiet:
            console.print(f"simulated {len(w):,} jobs on {fac.name} ({fac.total_gpus:,} GPUs), policy "
                          f"{policy}: {_days(result.end_time)} in {result.wall_s:.1f} s; writing {out}")
        an = write_run(result, out)
    except USER_ERRORS as exc:
        raise _fail(str(exc)) from None
    if not quiet:
        console.print(_summary_table([(policy, an.summary)]))
        if an.summary.get("stalled"):
            console.print(f"[yellow]stalled:[/yellow] {escape(str(an.summary['stalled']))}")
        console.print(f"report: {out / 'report.html'}")


def compare_cmd(
    workload: WorkloadOpt,
    policies: Annotated[list[str] | None, typer.Option(
        "--policy", "-p", help="Repeat to compare policies.")] = None,
    facilities: Annotated[list[str] | None, typer.Option(
        "--facility", "-f", help="Repeat to compare facilities (presets or files).")] = None,
    out: OutOpt = Path("runs/compare"),
    tree: TreeOpt = None,
    cycle: CycleOpt = "events",
    failures: FailOpt = True,
    mtbf_hours: MtbfOpt = LLAMA3_NODE_MTBF_H,
    repair_hours: RepairOpt = 4.0,
    seed: SeedOpt = 0,
    until: UntilOpt = None,
    skip_invalid: SkipOpt = False,
    validate: ValidateOpt = False,
    estimates: EstOpt = "exact",
    start_overhead: OverheadOpt = 0.0,
    reclaim_deadline: DeadlineOpt = 600.0,
    workers: Annotated[int, typer.Option("--workers", help="Parallel processes (default: up to 4).")] = 0,
    quiet: QuietOpt = False,
) -> None:
    """Run several policies and/or facilities on one workload, in parallel; one report."""
    from gigafactory.twin.compare import compare, plan_runs
    from gigafactory.twin.inputs import resolve_workload

    console = Console(highlight=False, soft_wrap=True)
    pols = policies or ["gigafactory"]
    facs = facilities or ["gigafactory-100k"]
    try:
        runs = plan_runs(facs, pols)
        for p in pols:
            _config(p, cycle, failures, mtbf_hours, repair_hours, seed, until, skip_invalid,
                    validate, start_overhead, reclaim_deadline)
        cfg = _config(pols[0], cycle, failures, mtbf_hours, repair_hours, seed, until, skip_invalid,
                      validate, start_overhead, reclaim_deadline)
        first = load_facility(facs[0])
        for f in facs[1:]:
            load_facility(f)
        specs, tree_name = _tree(tree)
        w = resolve_workload(workload, first, skip_invalid=skip_invalid, estimates=estimates)
        if len(facs) > 1:
            w.notes.append(f"the workload was built for {first.name}; every facility replays the same jobs")
        with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total} runs"),
                      console=console, disable=quiet, transient=True) as prog:
            task = prog.add_task("comparing", total=len(runs))
            analyses = compare(runs, w, cfg, out, specs, tree_name, workers or None,
                               on_done=lambda _s: prog.advance(task))
    except USER_ERRORS as exc:
        raise _fail(str(exc)) from None
    if not quiet:
        console.print(_summary_table([(a.label, a.summary) for a in analyses]))
        console.print(f"report: {out / 'report.html'}")


def register(app: typer.Typer) -> None:
    """Add ``simulate`` and ``compare`` to the ``gigafactory`` command."""
    app.command("simulate", help=simulate_cmd.__doc__)(simulate_cmd)
    app.command("compare", help=compare_cmd.__doc__)(compare_cmd)
