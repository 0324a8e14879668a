"""Importer ``alibaba-v2023``: the Alibaba GPU cluster trace v2023 pod list ("openb").

Source: ``cluster-trace-gpu-v2023/csv/openb_pod_list_*.csv`` (Weng et al., ATC'23), columns
``name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,
deletion_time,scheduled_time``; times in seconds from the trace start. One row is a pod.

Rules (all reported in the import notes):

- ``job_id`` = ``name``; ``submit_time`` = ``creation_time``;
  ``recorded_start`` = ``scheduled_time``; ``recorded_end`` = ``deletion_time``;
  ``duration`` = ``deletion_time - scheduled_time``.
- **Fractional GPUs**: a pod sharing part of one GPU (``num_gpu = 1``, ``gpu_milli < 1000``)
  is rounded up to one whole GPU; ``gpus`` = ``num_gpu``. Counted under ``adjusted``.
- **Tenant**: the trace has no tenant or user column, so every pod gets the single tenant
  ``alibaba``. ``qos`` is a class of service, not an owner: it goes to ``kind``, and
  ``BE`` (best effort) maps to priority ``preemptible``, every other class to ``normal``.
- ``accelerator`` = ``gpu_spec`` when set (``A|B`` means any of A, B; empty in the
  default file); ``status`` = ``pod_phase`` in lower case, Succeeded -> completed (the last
  phase seen; most ``Running`` pods were deleted before the trace ended).
- Pods whose ``deletion_time`` is the file's last one were still alive when the trace
  ended: their duration is a lower bound (counted under ``adjusted``).
- Skipped, by reason: CPU-only pods (``num_gpu = 0``) and pods never scheduled
  (``Pending`` with no ``scheduled_time``: no run time was recorded).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
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

FORMAT = "alibaba-v2023"
TENANT = "alibaba"
REQUIRED = ("name", "num_gpu", "gpu_milli", "creation_time", "deletion_time", "scheduled_time")
_STATUS = {"succeeded": "completed"}

SKIP_CPU = "CPU-only pod (num_gpu = 0)"
SKIP_NEVER_SCHEDULED = "pod never scheduled (no scheduled_time)"
ADJ_FRACTIONAL = "fractional GPU share rounded up to 1 GPU"
ADJ_CENSORED = "alive at trace end (duration is a lower bound)"


def load(path: Path, opts: ImportOptions) -> ImportResult:
    """Read an ``openb_pod_list_*.csv`` pod list into the canonical format."""
    src = read_source_csv(
        path, fmt=FORMAT, required=REQUIRED, string_columns=("name", "gpu_spec", "qos", "pod_phase")
    )
    skipped: Counter[str] = Counter()
    adjusted: Counter[str] = Counter()
    num_gpu = pd.to_numeric(src["num_gpu"], errors="coerce")
    cpu_only = (num_gpu == 0).to_numpy(dtype=bool, na_value=False)
    if cpu_only.any():
        skipped[SKIP_CPU] = int(cpu_only.sum())
    src = src.loc[~cpu_only]
    sched_missing = src["scheduled_time"].isna().to_numpy(dtype=bool)
    if sched_missing.any():
        skipped[SKIP_NEVER_SCHEDULED] = int(sched_missing.sum())
    src = src.loc[~sched_missing].reset_index(drop=True)

    created, bad_c = to_seconds(src["creation_time"])
    started, bad_s = to_seconds(src["scheduled_time"])
    ended, bad_e = to_seconds(src["deletion_time"])
    gpu_milli = pd.to_numeric(src["gpu_milli"], errors="coerce")
    gpus = pd.to_numeric(src["num_gpu"], errors="coerce")
    fractional = ((gpus == 1) & (gpu_milli < 1000)).to_numpy(dtype=bool, na_value=False)
    if fractional.any():
        adjusted[ADJ_FRACTIONAL] = int(fractional.sum())

    df = pd.DataFrame({
        "job_id": src["name"],
        "submit_time": created,
        "gpus": src["num_gpu"],
        "duration": ended - started,
        "tenant": TENANT,
        "recorded_start": started,
        "recorded_end": ended,
    })
    qos = src["qos"] if "qos" in src.columns else pd.Series(pd.NA, index=src.index, dtype="string")
    df["kind"] = qos
    df["priority"] = np.where(qos.str.upper().eq("BE").fillna(False).to_numpy(dtype=bool), "preemptible", "normal")
    if "gpu_spec" in src.columns:
        df["accelerator"] = src["gpu_spec"]
    phase = src["pod_phase"] if "pod_phase" in src.columns else pd.Series(pd.NA, index=src.index)
    phase = phase.astype("string").str.strip().str.lower()
    df["status"] = phase.map(_STATUS).fillna(phase).astype("string")
    censored = (ended == ended.max()).to_numpy(dtype=bool, na_value=False) if len(df) else []
    if np.any(censored):
        adjusted[ADJ_CENSORED] = int(np.sum(censored))
    df[SRC_COLUMN] = src[SRC_COLUMN]
    df[ROW_COLUMN] = src[ROW_COLUMN]

    notes = [
        f"tenant: the trace has no tenant column; all pods use the single tenant {TENANT!r}",
        "gpus = num_gpu; a fractional share of one GPU (gpu_milli < 1000) counts as 1 whole GPU",
        "priority: qos BE (best effort) -> preemptible, other qos classes -> normal; kind = qos",
        "duration = deletion_time - scheduled_time; recorded_start/end = scheduled/deletion time",
    ]
    rules = [
        time_rule("creation_time", src["creation_time"], bad_c),
        time_rule("scheduled_time", src["scheduled_time"], bad_s),
        time_rule("deletion_time", src["deletion_time"], bad_e),
    ]
    return finish(df, source=str(path), opts=opts, skipped=skipped, notes=notes,
                  adjusted=adjusted, rules=rules)
