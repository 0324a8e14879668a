"""``gigafactory trace``: import public workload traces into the canonical format, inspect them.

``trace import FORMAT PATH -o OUT`` converts a source trace (see ``IMPORTERS``) to a
canonical Parquet or CSV file and prints what was skipped, what was adjusted by a rule,
and the assumptions made. ``trace stats PATH`` summarises a canonical trace. User errors
print one red ``error:`` line and exit with status 2.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from gigafactory.twin.traces import (
    IMPORTERS,
    TraceError,
    file_format,
    import_trace,
    read_trace,
    trace_stats,
    write_trace,
)
from gigafactory.twin.traces.stats import human_seconds

_FORMATS_HELP = "\n\n".join(f"[bold]{name}[/bold]: {escape(imp.summary)}" for name, imp in IMPORTERS.items())

trace_app = typer.Typer(
    name="trace",
    help="Workload traces for the digital twin: import public traces, summarise canonical ones.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)


def _console() -> Console:
    return Console(highlight=False, soft_wrap=True)


def _fail(message: str) -> typer.Exit:
    """Print ``error: message`` in red on stderr, one line; return the exit to raise."""
    Console(stderr=True, highlight=False, soft_wrap=True).print(f"[red]error:[/red] {escape(message)}")
    return typer.Exit(2)


@trace_app.command(
    "import",
    help="Convert a trace in a public FORMAT into a canonical trace file.\n\n"
    "Every skipped row is counted by reason, rows changed by a documented rule are counted "
    "too, and the assumptions used (tenant, GPU and duration rules) are printed.\n\n"
    f"Formats:\n\n{_FORMATS_HELP}",
)
def import_cmd(
    fmt: Annotated[str, typer.Argument(metavar="FORMAT", help=f"Source format: {', '.join(IMPORTERS)}.")],
    path: Annotated[Path, typer.Argument(
        metavar="PATH", help="Source trace file, or a directory of per-VC files for gavel.",
    )],
    output: Annotated[Path, typer.Option(
        "-o", "--output", help="Canonical trace to write: .parquet/.pq or .csv/.csv.gz (by suffix).",
    )],
    skip_invalid: Annotated[bool, typer.Option(
        "--skip-invalid",
        help="Skip invalid rows and report how many per reason, instead of stopping at the first ones.",
    )] = False,
    mapping: Annotated[list[str] | None, typer.Option(
        "--map", metavar="SOURCE=FIELD[*SCALE]",
        help="csv format only, repeatable: map column SOURCE to canonical FIELD, optionally times "
        "SCALE (runtime_min=duration*60); FIELD:=VALUE sets a constant (tenant:=lab-a).",
    )] = None,
    throughputs: Annotated[Path | None, typer.Option(
        "--throughputs", metavar="FILE",
        help="gavel format only: Gavel's simulation_throughputs.json (default: found next to msr/).",
    )] = None,
) -> None:
    console = _console()
    try:
        file_format(output)  # refuse a bad output name before a long import
        if not output.parent.exists():
            raise TraceError(f"{output}: directory {output.parent} does not exist")
        with console.status(f"importing {fmt} trace from {path} ..."):
            res = import_trace(fmt, path, skip_invalid=skip_invalid, mapping=mapping or (),
                               throughputs=throughputs)
            if not len(res.df):
                raise TraceError(f"{path}: no jobs left to write ({_counts(res.skipped)})")
            write_trace(res.df, output)
    except TraceError as exc:
        raise _fail(str(exc)) from None
    df = res.df
    console.print(
        f"[green]imported[/green] {len(df):,} jobs of {df['tenant'].nunique():,} tenant(s) "
        f"from {escape(str(path))} -> {escape(str(output))}"
    )
    _print_counts(console, "skipped rows", res.skipped)
    _print_counts(console, "adjusted rows (kept, changed by a documented rule)", res.adjusted)
    if res.notes:
        console.print("[bold]assumptions[/bold]")
        for note in res.notes:
            console.print(f"  - {escape(note)}")


def _counts(counter: Counter[str]) -> str:
    if not counter:
        return "nothing skipped"
    return f"{sum(counter.values()):,} skipped: " + "; ".join(f"{k}: {v:,}" for k, v in counter.most_common())


def _print_counts(console: Console, title: str, counter: Counter[str]) -> None:
    if not counter:
        return
    console.print(f"[bold]{title}[/bold]: {sum(counter.values()):,}")
    for reason, n in counter.most_common():
        console.print(f"  {n:>9,}  {escape(reason)}")


@trace_app.command("stats", help="Summarise a canonical trace: sizes, durations, offered GPU-hours, tenants.")
def stats_cmd(
    path: Annotated[Path, typer.Argument(
        metavar="PATH", help="Canonical trace file (.parquet/.pq or .csv/.csv.gz).",
    )],
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON instead of tables.")] = False,
    skip_invalid: Annotated[bool, typer.Option(
        "--skip-invalid", help="Skip invalid rows (counted in the output) instead of failing.",
    )] = False,
    top: Annotated[int, typer.Option(
        "--top", min=1, help="Tenants shown in the per-tenant table, by offered GPU-hours (JSON has all).",
    )] = 20,
) -> None:
    try:
        load = read_trace(path, skip_invalid=skip_invalid)
    except TraceError as exc:
        raise _fail(str(exc)) from None
    stats = trace_stats(load.df)
    stats["skipped"] = dict(load.skipped)
    if as_json:
        typer.echo(json.dumps(stats, indent=2))
        return
    _print_stats(_console(), str(path), stats, top)


def _print_stats(console: Console, name: str, s: dict[str, Any], top: int) -> None:
    g = s["gpus_per_job"]
    d = s["duration_s"]
    summary = Table(title=f"trace {escape(name)}", show_header=False, title_justify="left")
    summary.add_column(style="bold")
    summary.add_column()
    rows = [
        ("jobs", f"{s['jobs']:,}"),
        ("tenants", f"{s['tenants']:,}"),
        ("GPUs per job", f"min {g['min']}  median {g['median']:g}  mean {g['mean']:.2f}  max {g['max']}"
         if s["jobs"] else "-"),
        ("duration", "  ".join(f"{k} {human_seconds(d[k])}" for k in ("p10", "p50", "p90", "p99"))),
        ("", f"mean {human_seconds(d['mean'])}  max {human_seconds(d['max'])}"),
        ("offered GPU-hours", f"{s['offered_gpu_hours']:,.0f}"),
        ("arrival span", human_seconds(s["span_s"])),
        ("mean offered GPUs", f"{s['mean_offered_gpus']:,.1f}" if s["mean_offered_gpus"] else "-"),
    ]
    if s["skipped"]:
        rows.append(("skipped rows", _counts(Counter(s["skipped"]))))
    for k, v in rows:
        summary.add_row(k, escape(v))
    console.print(summary)

    bands = Table(title="gang sizes", title_justify="left")
    for col in ("GPUs", "jobs", "% jobs", "GPU-hours", "% GPU-hours"):
        bands.add_column(col, justify="right")
    for b in s["size_bands"]:
        bands.add_row(b["band"], f"{b['jobs']:,}", f"{100 * b['job_share']:.1f}",
                      f"{b['gpu_hours']:,.0f}", f"{100 * b['gpu_hour_share']:.1f}")
    console.print(bands)

    tenants = Table(title=f"tenants (top {min(top, len(s['per_tenant']))} by GPU-hours)", title_justify="left")
    tenants.add_column("tenant")
    for col in ("jobs", "GPU-h", "% GPU-h", "med. GPUs", "max GPUs", "med. duration"):
        tenants.add_column(col, justify="right")
    for t in s["per_tenant"][:top]:
        tenants.add_row(escape(t["tenant"]), f"{t['jobs']:,}", f"{t['gpu_hours']:,.0f}",
                        f"{100 * t['gpu_hour_share']:.1f}", f"{t['median_gpus']:g}", str(t["max_gpus"]),
                        human_seconds(t["median_duration_s"]))
    console.print(tenants)
    rest = len(s["per_tenant"]) - top
    if rest > 0:
        console.print(f"... and {rest:,} more tenant(s); --top or --json shows them")


def register(app: typer.Typer) -> None:
    """Add the ``trace`` sub-app to the main ``gigafactory`` app."""
    app.add_typer(trace_app, name="trace")
