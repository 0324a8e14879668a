"""Importer ``helios``: SenseTime Helios cluster logs (S-Lab HeliosData, SC'21).

Source: CSV ``job_id,user,vc,jobname,gpu_num,cpu_num,state,submit_time,duration`` (some
releases add ``node_num,start_time,end_time``). Times are epoch seconds or date strings;
durations are seconds.

Rules (reported in the import notes):

- ``job_id`` as named; **tenant** = ``vc`` (the virtual cluster, Helios's unit of quota);
  ``gpus`` = ``gpu_num``; ``duration`` as named; ``status`` = ``state`` in lower case.
- ``recorded_start``/``recorded_end`` = ``start_time``/``end_time`` when the file has them.
- Skipped, by reason: CPU jobs (``gpu_num = 0``): Helios logs CPU and GPU jobs together.
- ``jobname`` is anonymised in the public data and not used.
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
    time_rule,
    to_seconds,
)
from gigafactory.twin.traces.schema import ROW_COLUMN, SRC_COLUMN, Rule

FORMAT = "helios"
REQUIRED = ("job_id", "vc", "gpu_num", "submit_time", "duration")
SKIP_CPU = "CPU job (gpu_num = 0)"


def drop_cpu_jobs(src: pd.DataFrame, skipped: Counter[str]) -> pd.DataFrame:
    """Leave out rows with ``gpu_num == 0`` and count them under :data:`SKIP_CPU`."""
    cpu = (pd.to_numeric(src["gpu_num"], errors="coerce") == 0).to_numpy(dtype=bool, na_value=False)
    if cpu.any():
        skipped[SKIP_CPU] = int(cpu.sum())
    return src.loc[~cpu].reset_index(drop=True)


def recorded_times(src: pd.DataFrame, df: pd.DataFrame, rules: list[Rule]) -> bool:
    """Copy ``start_time``/``end_time`` into ``recorded_start``/``recorded_end`` if present."""
    found = False
    for col, field in (("start_time", "recorded_start"), ("end_time", "recorded_end")):
        if col in src.columns:
            secs, bad = to_seconds(src[col])
            df[field] = secs
            rules.append(time_rule(col, src[col], bad))
            found = True
    return found


def load(path: Path, opts: ImportOptions) -> ImportResult:
    """Import a Helios cluster log CSV."""
    src = read_source_csv(
        path, fmt=FORMAT, required=REQUIRED, string_columns=("job_id", "user", "vc", "jobname", "state")
    )
    skipped: Counter[str] = Counter()
    src = drop_cpu_jobs(src, skipped)
    submit, bad_submit = to_seconds(src["submit_time"])
    df = pd.DataFrame({
        "job_id": src["job_id"],
        "submit_time": submit,
        "gpus": src["gpu_num"],
        "duration": src["duration"],
        "tenant": src["vc"],
        SRC_COLUMN: src[SRC_COLUMN],
        ROW_COLUMN: src[ROW_COLUMN],
    })
    if "state" in src.columns:
        df["status"] = src["state"].str.strip().str.lower()
    rules = [time_rule("submit_time", src["submit_time"], bad_submit)]
    notes = ["tenant = vc (virtual cluster)", "gpus = gpu_num; status = state"]
    if recorded_times(src, df, rules):
        notes.append("recorded_start/end = start_time/end_time")
    return finish(df, source=str(path), opts=opts, skipped=skipped, notes=notes, rules=rules)
