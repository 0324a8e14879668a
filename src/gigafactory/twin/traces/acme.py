"""Importer ``acme``: Shanghai AI Lab's Acme traces (Seren and Kalos LLM clusters, NSDI'24).

Two layouts, told apart by their columns:

- **raw** (InternLM/AcmeTrace ``data/job_trace/trace_{seren,kalos}.csv``):
  ``job_id,user,node_num,gpu_num,cpu_num,type,state,submit_time,start_time,end_time,
  duration,queue,gpu_time`` (Kalos adds a few columns). ``queue`` is the queueing delay in
  seconds, not a queue name.

  - ``job_id`` as named; **tenant** = ``user`` (the trace has no project or VC column);
    ``gpus`` = ``gpu_num`` (all GPUs of the job); ``duration`` as named;
    ``kind`` = ``type`` (Pretrain, SFT, Evaluation, Debug, ...); ``status`` = ``state``
    in lower case; ``recorded_start``/``recorded_end`` = ``start_time``/``end_time``.
  - Skipped, by reason: CPU jobs (``gpu_num = 0``).

- **converted** (hyunnnchoi/AcmeTrace ``data/converted_trace/converted_kalos_trace.csv``):
  ``job_id,arrival_time,num_iteration,iteration_computing_time,...,gpu_workers,ps,
  gpu_per_worker,...``: 319 COMPLETED Kalos jobs.

  - ``submit_time`` = ``arrival_time``; ``gpus`` = ``gpu_workers x gpu_per_worker``;
    ``duration`` = ``num_iteration x iteration_computing_time`` (0.5 s per iteration in
    the file: the converter's unit; the networking time is synthetic and not added).
  - **tenant**: the single tenant ``kalos``; ``status`` = completed.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd

from gigafactory.twin.traces.common import (
    ImportOptions,
    ImportResult,
    finish,
    read_source_csv,
    require_columns,
    time_rule,
    to_seconds,
)
from gigafactory.twin.traces.helios import drop_cpu_jobs, recorded_times
from gigafactory.twin.traces.schema import ROW_COLUMN, SRC_COLUMN

FORMAT = "acme"
RAW_REQUIRED = ("job_id", "user", "gpu_num", "submit_time", "duration")
CONVERTED_REQUIRED = ("job_id", "arrival_time", "num_iteration", "iteration_computing_time",
                      "gpu_workers", "gpu_per_worker")
CONVERTED_TENANT = "kalos"


def load(path: Path, opts: ImportOptions) -> ImportResult:
    """Import an Acme CSV, raw or converted."""
    src = read_source_csv(
        path, fmt=FORMAT, required=(), string_columns=("job_id", "user", "type", "state")
    )
    if "arrival_time" in src.columns and "num_iteration" in src.columns:
        return _converted(path, src, opts)
    require_columns(src, RAW_REQUIRED, path=path, fmt=FORMAT)
    skipped: Counter[str] = Counter()
    src = drop_cpu_jobs(src, skipped)
    submit, bad_submit = to_seconds(src["submit_time"])
    df = pd.DataFrame({
        "job_id": src["job_id"],
        "submit_time": submit,
        "gpus": src["gpu_num"],
        "duration": src["duration"],
        "tenant": src["user"],
        SRC_COLUMN: src[SRC_COLUMN],
        ROW_COLUMN: src[ROW_COLUMN],
    })
    if "type" in src.columns:
        df["kind"] = src["type"]
    if "state" in src.columns:
        df["status"] = src["state"].str.strip().str.lower()
    rules = [time_rule("submit_time", src["submit_time"], bad_submit)]
    recorded_times(src, df, rules)
    notes = [
        "tenant = user (the trace has no project or VC column)",
        "gpus = gpu_num; kind = type; status = state; recorded_start/end = start_time/end_time",
    ]
    return finish(df, source=str(path), opts=opts, skipped=skipped, notes=notes, rules=rules)


def _converted(path: Path, src: pd.DataFrame, opts: ImportOptions) -> ImportResult:
    require_columns(src, CONVERTED_REQUIRED, path=path, fmt=f"{FORMAT} (converted)")
    num = {c: pd.to_numeric(src[c], errors="coerce") for c in CONVERTED_REQUIRED[2:]}
    submit, bad_submit = to_seconds(src["arrival_time"])
    df = pd.DataFrame({
        "job_id": src["job_id"],
        "submit_time": submit,
        "gpus": num["gpu_workers"] * num["gpu_per_worker"],
        "duration": num["num_iteration"] * num["iteration_computing_time"],
        "tenant": CONVERTED_TENANT,
        "status": "completed",
        SRC_COLUMN: src[SRC_COLUMN],
        ROW_COLUMN: src[ROW_COLUMN],
    })
    notes = [
        "converted Acme (Kalos) layout: gpus = gpu_workers x gpu_per_worker; duration = "
        "num_iteration x iteration_computing_time (the networking time is synthetic, not added)",
        f"tenant: no user column; single tenant {CONVERTED_TENANT!r}; all jobs completed",
    ]
    rules = [time_rule("arrival_time", src["arrival_time"], bad_submit)]
    return finish(df, source=str(path), opts=opts, notes=notes, rules=rules)
