"""The importers, by format name, in one explicit table, and the function that runs one."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from gigafactory.twin.traces import acme, alibaba, gavel, generic, helios, philly, pollux, tiresias
from gigafactory.twin.traces.common import ImportOptions, ImportResult
from gigafactory.twin.traces.schema import TraceError


@dataclass(frozen=True)
class Importer:
    """One source format: its loader, a one-line description and the options it takes."""

    load: Callable[[Path, ImportOptions], ImportResult]
    summary: str
    options: frozenset[str] = frozenset()


IMPORTERS: dict[str, Importer] = {
    "alibaba-v2023": Importer(
        alibaba.load, "Alibaba GPU v2023 pod list CSV (openb_pod_list_*.csv); tenant 'alibaba'"
    ),
    "gavel": Importer(
        gavel.load,
        "Gavel per-VC .trace files (a directory such as msr/seed=0, or one file); "
        "tenant = VC; duration = total_steps / V100 throughput",
        frozenset({"throughputs"}),
    ),
    "pollux": Importer(
        pollux.load,
        "Pollux/Sia workload CSV (name,time,application,num_replicas,batch_size); "
        "duration from per-application GPU-time bands",
    ),
    "philly": Importer(
        philly.load, "Microsoft Philly cluster_job_log JSON; tenant = vc; duration = attempts' run time"
    ),
    "helios": Importer(
        helios.load, "SenseTime Helios cluster log CSV; tenant = vc; CPU jobs skipped and counted"
    ),
    "acme": Importer(
        acme.load,
        "Shanghai AI Lab Acme CSV (raw trace_seren/kalos.csv, tenant = user; "
        "or converted_kalos_trace.csv)",
    ),
    "tiresias": Importer(
        tiresias.load, "Tiresias simulator job CSV (job_id,num_gpu,submit_time,...,duration)"
    ),
    "csv": Importer(
        generic.load,
        "any job table (CSV, or Parquet by suffix); --map SOURCE=FIELD[*SCALE] or FIELD:=VALUE",
        frozenset({"mapping"}),
    ),
}

_OPTION_FLAGS = {"mapping": "--map", "throughputs": "--throughputs"}


def import_trace(
    fmt: str,
    path: str | Path,
    *,
    skip_invalid: bool = False,
    mapping: Sequence[str] = (),
    throughputs: str | Path | None = None,
) -> ImportResult:
    """Import the trace at ``path`` written in source format ``fmt`` (a key of IMPORTERS).

    Raises :class:`TraceError` (one line) for an unknown format, an option that the
    format does not take, an unreadable source, or (without ``skip_invalid``) bad rows.
    """
    importer = IMPORTERS.get(fmt)
    if importer is None:
        raise TraceError(f"unknown trace format {fmt!r}; expected one of {', '.join(IMPORTERS)}")
    given = {"mapping": bool(mapping), "throughputs": throughputs is not None}
    for name, used in given.items():
        if used and name not in importer.options:
            takers = [f for f, imp in IMPORTERS.items() if name in imp.options]
            raise TraceError(
                f"{_OPTION_FLAGS[name]} does not apply to format {fmt!r} "
                f"(only to {', '.join(takers) or 'no format'})"
            )
    opts = ImportOptions(
        skip_invalid=skip_invalid,
        mapping=tuple(mapping),
        throughputs=Path(throughputs) if throughputs is not None else None,
    )
    return importer.load(Path(path), opts)
