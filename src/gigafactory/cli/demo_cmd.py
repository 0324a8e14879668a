"""``gigafactory demo``: a scheduling demonstration on the ``dev-32`` preset.

It builds a small share tree (EU public, host state, private investor), submits a
mix of jobs over a few simulated minutes, runs the scheduling core and prints what
it decided and why. Everything runs in-process; nothing is written.
"""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from gigafactory.core.decisions import Decisions
from gigafactory.core.facility import preset
from gigafactory.core.jobs import JobSpec, PriorityClass, TopologyWish
from gigafactory.core.scheduler import Scheduler, SchedulerConfig
from gigafactory.core.shares import ShareTree, TenantKind, TenantSpec

console = Console()


def demo_tree() -> ShareTree:
    """Three partners with guarantees, programmes and projects (dev-32 sized)."""
    P, G, J = TenantKind.PARTNER, TenantKind.PROGRAMME, TenantKind.PROJECT
    return ShareTree([
        TenantSpec("eu-public", P, guarantee=16, weight=2),
        TenantSpec("sme-track", G, parent="eu-public", guarantee=8),
        TenantSpec("startup-llm", J, parent="sme-track", guarantee=8, tenant_class="startup"),
        TenantSpec("science", G, parent="eu-public", guarantee=8),
        TenantSpec("climate-lab", J, parent="science", guarantee=8, tenant_class="research"),
        TenantSpec("host-state", P, guarantee=8),
        TenantSpec("gov-ai", J, parent="host-state", guarantee=8, tenant_class="public"),
        TenantSpec("private-investor", P, guarantee=8, borrow_limit=16),
        TenantSpec("industry-co", J, parent="private-investor", guarantee=8, tenant_class="industry"),
    ])


SCRIPT: list[tuple[float, JobSpec]] = [
    (0, JobSpec("pretrain-1", "industry-co", 24, walltime=4 * 3600, runtime_estimate=3 * 3600,
                checkpointable=True, checkpoint_interval=1800, topology=TopologyWish.FEWEST_BLOCKS)),
    (0, JobSpec("eval-1", "gov-ai", 2, walltime=1800, runtime_estimate=600)),
    (60, JobSpec("finetune-1", "startup-llm", 8, walltime=2 * 3600, runtime_estimate=3600)),
    (60, JobSpec("sweep-1", "industry-co", 4, walltime=3600, priority=PriorityClass.PREEMPTIBLE)),
    (120, JobSpec("climate-1", "climate-lab", 16, walltime=6 * 3600, runtime_estimate=5 * 3600,
                  checkpointable=True, checkpoint_interval=900)),
    (180, JobSpec("debug-1", "startup-llm", 1, walltime=600, runtime_estimate=300)),
    (240, JobSpec("alert-1", "gov-ai", 4, walltime=3600, priority=PriorityClass.URGENT)),
]


def _show(d: Decisions, s: Scheduler) -> None:
    table = Table(title=f"cycle at t={d.now:.0f}s — {s.state.free_total} of {s.facility.total_gpus} GPUs free")
    table.add_column("job")
    table.add_column("decision")
    table.add_column("when")
    table.add_column("why")
    for st in d.starts:
        n = st.placement.gpus
        table.add_row(st.job_id, "[green]start[/green]", "now", f"{n} GPU{'' if n == 1 else 's'}: {st.reason}")
    for p in d.preemptions:
        table.add_row(p.job_id, "[red]preempt[/red]", "now",
                      f"for {p.for_job}: {p.reason}; {p.lost_gpu_seconds / 3600:.2f} GPU-h since checkpoint")
    for ps in d.pending:
        when = "unknown" if ps.estimated_start is None else f"t≈{ps.estimated_start:.0f}s"
        table.add_row(ps.job_id, "[yellow]wait[/yellow]", when, ps.reason)
    console.print(table)


def run_demo() -> Scheduler:
    s = Scheduler(preset("dev-32"), demo_tree(), "gigafactory",
                  SchedulerConfig(reclaim_deadline=120, preemption_grace=30))
    times = sorted({t for t, _ in SCRIPT} | {300.0})
    for now in times:
        for t, job in SCRIPT:
            if t == now:
                s.submit(job)
        # victims of the last cycle have stopped (grace period) and are requeued
        for rj in [r for r in s.running.values() if r.preempting]:
            ended = s.job_ended(rj.spec.id, now)
            s.submit(ended.spec, attained_service=ended.attained(now), now=now)
        _show(s.cycle(now), s)
    ent = Table(title="entitlements now (GPUs)")
    ent.add_column("tenant")
    ent.add_column("entitled", justify="right")
    ent.add_column("running", justify="right")
    for name, value in s.cycle(s.now).entitlements.items():
        ent.add_row(name, f"{value:.1f}", str(int(s.used[s.tree.index[name]])))
    console.print(ent)
    return s


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo() -> None:
        """Run a scheduling demonstration on the dev-32 preset and explain every decision."""
        console.print("[bold]gigafactory demo[/bold]: dev-32 (4 nodes × 8 H100), three partners\n")
        run_demo()
