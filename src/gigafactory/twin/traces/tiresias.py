"""Importer ``tiresias``: the Tiresias (NSDI'19) simulator's job CSVs.

Source: SymbioticLab/Tiresias ``simulator/*.csv``: ``60_job.csv`` (``job_id,num_gpu,
submit_time,iterations,model_name,duration,interval``) and ``tf_job.csv`` (``job_id,num_gpu,
submit_time,start_time,duration,model_size,aggr_interval,model_name,model_scale``). These
are toy inputs, good for smoke tests. Times and durations are in seconds.

Rules (reported in the import notes):

- ``job_id``, ``submit_time``, ``duration`` as named; ``gpus`` = ``num_gpu``;
  ``kind`` = ``model_name`` when present.
- ``recorded_start`` = ``start_time`` and ``recorded_end`` = ``start_time + duration``
  when the file has ``start_time``.
- **Tenant**: ``vc`` or else ``user`` when the file has one; otherwise the single tenant
  ``tiresias``.
- ``interval`` (the gap to the next arrival) and the model-size columns are not used.
"""

from __future__ import annotations

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
from gigafactory.twin.traces.schema import ROW_COLUMN, SRC_COLUMN

FORMAT = "tiresias"
TENANT = "tiresias"
REQUIRED = ("job_id", "num_gpu", "submit_time", "duration")


def load(path: Path, opts: ImportOptions) -> ImportResult:
    """Import one Tiresias job CSV."""
    src = read_source_csv(
        path, fmt=FORMAT, required=REQUIRED,
        string_columns=("job_id", "model_name", "vc", "user"),
    )
    submit, bad_submit = to_seconds(src["submit_time"])
    rules = [time_rule("submit_time", src["submit_time"], bad_submit)]
    tenant_col = next((c for c in ("vc", "user") if c in src.columns), None)
    df = pd.DataFrame({
        "job_id": src["job_id"],
        "submit_time": submit,
        "gpus": src["num_gpu"],
        "duration": src["duration"],
        "tenant": src[tenant_col] if tenant_col else TENANT,
        SRC_COLUMN: src[SRC_COLUMN],
        ROW_COLUMN: src[ROW_COLUMN],
    })
    if "model_name" in src.columns:
        df["kind"] = src["model_name"]
    notes = [
        f"tenant = {tenant_col}" if tenant_col else f"tenant: no vc/user column; single tenant {TENANT!r}",
        "gpus = num_gpu; kind = model_name",
    ]
    if "start_time" in src.columns:
        start, bad_start = to_seconds(src["start_time"])
        rules.append(time_rule("start_time", src["start_time"], bad_start))
        df["recorded_start"] = start
        df["recorded_end"] = start + pd.to_numeric(src["duration"], errors="coerce")
        notes.append("recorded_start = start_time, recorded_end = start_time + duration")
    return finish(df, source=str(path), opts=opts, notes=notes, rules=rules)
