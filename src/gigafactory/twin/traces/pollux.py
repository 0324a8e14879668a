"""Importer ``pollux``: the Pollux (OSDI'21) / Sia simulator workloads, sampled from Philly.

Source: petuum/adaptdl branch ``osdi21-artifact``, ``simulator/workloads*/workload-N.csv``,
columns ``name,time,application,num_replicas,batch_size``. One row is a job; ``time`` is
its submit time in seconds.

Rules (all reported in the import notes):

- ``job_id`` = ``name``; ``submit_time`` = ``time``; ``gpus`` = ``num_replicas`` (the
  initial GPU count); ``kind`` = ``application``.
- **Tenant**: the workloads are one busy window of one cluster with no user column, so all
  jobs get the single tenant ``pollux``.
- **Duration model**: the file has no duration (Pollux's simulator derives run time from
  measured throughput and adaptive batch sizes). Pollux's workload generator assigned each
  application by the Philly job's GPU-time band: cifar10/ncf < 1 GPU-hour (jobs of at least
  60 s), deepspeech2/bert 1-10, yolov3 10-100, imagenet 100-1000 GPU-hours. Each job gets
  its band's geometric midpoint as its GPU-time (:data:`REFERENCE_GPU_SECONDS`:
  cifar10/ncf 465 s, deepspeech2/bert 3.16 h, yolov3 31.6 h, imagenet 316 h) and
  ``duration = GPU-time / gpus``: perfect linear scaling, so the offered GPU-hours do not
  depend on the replica count. Unknown applications are invalid rows.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from gigafactory.twin.traces.common import (
    ImportOptions,
    ImportResult,
    finish,
    read_source_csv,
    time_rule,
    to_seconds,
)
from gigafactory.twin.traces.schema import ROW_COLUMN, SRC_COLUMN, Rule

FORMAT = "pollux"
TENANT = "pollux"
HOUR = 3600.0
_SMALL = math.sqrt(60.0 * HOUR)  # geometric midpoint of [60 s, 1 GPU-hour)

#: GPU-seconds of one job of each application (the midpoint of its Pollux GPU-time band).
REFERENCE_GPU_SECONDS: dict[str, float] = {
    "cifar10": _SMALL,
    "ncf": _SMALL,
    "deepspeech2": math.sqrt(10.0) * HOUR,
    "bert": math.sqrt(10.0) * HOUR,
    "yolov3": math.sqrt(10.0) * 10.0 * HOUR,
    "imagenet": math.sqrt(10.0) * 100.0 * HOUR,
}
REQUIRED = ("name", "time", "application", "num_replicas")


def load(path: Path, opts: ImportOptions) -> ImportResult:
    """Import one Pollux workload CSV."""
    src = read_source_csv(path, fmt=FORMAT, required=REQUIRED, string_columns=("name", "application"))
    app = src["application"].str.strip().str.lower()
    submit, bad_time = to_seconds(src["time"])
    gpu_seconds = app.map(REFERENCE_GPU_SECONDS).astype("float64")
    gpus = pd.to_numeric(src["num_replicas"], errors="coerce")
    df = pd.DataFrame({
        "job_id": src["name"],
        "submit_time": submit,
        "gpus": src["num_replicas"],
        "duration": gpu_seconds / gpus,
        "tenant": TENANT,
        "kind": app,
        SRC_COLUMN: src[SRC_COLUMN],
        ROW_COLUMN: src[ROW_COLUMN],
    })
    unknown = (app.notna() & gpu_seconds.isna()).to_numpy(dtype=bool)
    known = ", ".join(REFERENCE_GPU_SECONDS)
    rules = [
        time_rule("time", src["time"], bad_time),
        Rule(f"application must be one of {known}", unknown, lambda i: src["application"].iloc[i]),
        Rule("application is missing", app.isna().to_numpy(dtype=bool)),
    ]
    bands = ", ".join(f"{a} {s / HOUR:.3g}" for a, s in REFERENCE_GPU_SECONDS.items())
    notes = [
        f"tenant: no user column; all jobs use the single tenant {TENANT!r}",
        "gpus = num_replicas (the initial replica count; Pollux itself rescales jobs)",
        "duration model (the trace has none): GPU-time per application = geometric midpoint of "
        f"its Pollux GPU-time band, in GPU-hours: {bands}; duration = GPU-time / gpus "
        "(linear scaling)",
        "Pollux's own simulator gives these applications shorter, throughput-based run times: "
        "the offered load here is the Philly jobs' GPU-time, not the paper's",
    ]
    if "batch_size" in src.columns:
        notes.append("batch_size is not used")
    return finish(df, source=str(path), opts=opts, notes=notes, rules=rules)
