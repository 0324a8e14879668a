"""Importer ``philly``: Microsoft Philly's ``cluster_job_log`` (msr-fiddle/philly-traces).

Source: one JSON array of jobs, each ``{"jobid", "user", "vc", "status", "submitted_time",
"attempts": [{"start_time", "end_time", "detail": [{"ip", "gpus": [...]}]}]}``; times are
``YYYY-MM-DD HH:MM:SS`` strings (or ``None``), read as UTC (only differences matter).
Row numbers in messages count jobs in the array from 1.

Rules (reported in the import notes):

- ``job_id`` = ``jobid``; **tenant** = ``vc`` (the virtual cluster: Philly's unit of quota);
  ``submit_time`` = ``submitted_time``.
- ``gpus`` = the GPUs of the **first** attempt: the sum over its ``detail`` machines of the
  number of GPUs listed (a count is accepted too).
- ``duration`` = the sum of all attempts' ``end_time - start_time`` (the GPU time the
  cluster really spent, retries included); ``recorded_start`` = the first attempt's start,
  ``recorded_end`` = the last attempt's end.
- ``status``: Pass -> completed, Killed -> killed, Failed -> failed.
- Skipped, by reason: jobs with no attempt (never started) and jobs with an attempt that
  has no start or end time (still running when the log ends).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gigafactory.twin.traces.common import (
    ImportOptions,
    ImportResult,
    finish,
    time_rule,
    to_seconds,
)
from gigafactory.twin.traces.schema import (
    ROW_COLUMN,
    SRC_COLUMN,
    Rule,
    TraceError,
    check_input_file,
)

FORMAT = "philly"
SKIP_NO_ATTEMPT = "no attempt (never started)"
SKIP_OPEN_ATTEMPT = "attempt without start or end time (running when the log ends)"
MALFORMED = "malformed job record (needs jobid, vc, submitted_time and an attempts list)"
_STATUS = {"pass": "completed", "killed": "killed", "failed": "failed"}


def _gpu_count(detail: Any) -> int:
    total = 0
    for machine in detail or ():
        g = machine.get("gpus", ()) if isinstance(machine, dict) else ()
        total += int(g) if isinstance(g, int | float) else len(g)
    return total


def _missing(t: Any) -> bool:
    return t is None or (isinstance(t, str) and t.strip() in ("", "None"))


def load(path: Path, opts: ImportOptions) -> ImportResult:
    """Import a Philly ``cluster_job_log`` JSON file."""
    check_input_file(path)
    try:
        jobs = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TraceError(f"{path}: cannot read as JSON: {exc}") from None
    if not isinstance(jobs, list):
        raise TraceError(f"{path}: expected a JSON array of Philly jobs, got {type(jobs).__name__}")

    skipped: Counter[str] = Counter()
    cols: dict[str, list[Any]] = {k: [] for k in ("job_id", "tenant", "submitted", "gpus", "status", "row", "bad")}
    att_job: list[int] = []  # flattened attempts: index of their job in ``cols``
    att_start: list[Any] = []
    att_end: list[Any] = []
    for row, job in enumerate(jobs, start=1):
        try:
            attempts = job["attempts"]
            record = (job["jobid"], job["vc"], job["submitted_time"])
            if not isinstance(attempts, list):
                raise TypeError
        except (KeyError, TypeError):
            attempts, record, bad = [], (None, None, None), True
        else:
            bad = False
            if not attempts:
                skipped[SKIP_NO_ATTEMPT] += 1
                continue
            if any(not isinstance(a, dict) or _missing(a.get("start_time")) or _missing(a.get("end_time"))
                   for a in attempts):
                skipped[SKIP_OPEN_ATTEMPT] += 1
                continue
        k = len(cols["row"])
        cols["job_id"].append(record[0])
        cols["tenant"].append(record[1])
        cols["submitted"].append(record[2])
        cols["gpus"].append(_gpu_count(attempts[0].get("detail")) if attempts else None)
        cols["status"].append(job.get("status") if isinstance(job, dict) else None)
        cols["row"].append(row)
        cols["bad"].append(bad)
        for a in attempts:
            att_job.append(k)
            att_start.append(a["start_time"])
            att_end.append(a["end_time"])

    n = len(cols["row"])
    submitted_raw = pd.Series(cols["submitted"], dtype="object")
    submit, bad_submit = to_seconds(submitted_raw)
    start, bad_start = to_seconds(pd.Series(att_start, dtype="object"))
    end, bad_end = to_seconds(pd.Series(att_end, dtype="object"))
    idx = np.asarray(att_job, dtype=np.int64)
    s, e = start.to_numpy(dtype="float64"), end.to_numpy(dtype="float64")
    duration = np.bincount(idx, weights=e - s, minlength=n) if n else np.zeros(0)
    first_start = np.full(n, np.nan)
    last_end = np.full(n, np.nan)
    if len(idx):
        # Attempts are listed in order: the first of a job is where its index first appears.
        first = np.r_[True, idx[1:] != idx[:-1]]
        last = np.r_[idx[1:] != idx[:-1], True]
        first_start[idx[first]] = s[first]
        last_end[idx[last]] = e[last]
    bad_attempt_time = np.zeros(n, dtype=bool)
    bad_attempt_time[idx[bad_start | bad_end]] = True

    status = pd.Series(cols["status"], dtype="string").str.strip().str.lower()
    df = pd.DataFrame({
        "job_id": pd.Series(cols["job_id"], dtype="object"),
        "submit_time": submit,
        "gpus": pd.Series(cols["gpus"], dtype="float64"),
        "duration": duration,
        "tenant": pd.Series(cols["tenant"], dtype="object"),
        "recorded_start": first_start,
        "recorded_end": last_end,
        "status": status.map(_STATUS).fillna(status).astype("string"),
        SRC_COLUMN: str(path),
        ROW_COLUMN: np.asarray(cols["row"], dtype=np.int64),
    })
    rules = [
        Rule(MALFORMED, np.asarray(cols["bad"], dtype=bool)),
        time_rule("submitted_time", submitted_raw, bad_submit),
        Rule("attempt start_time/end_time must be dates", bad_attempt_time),
    ]
    notes = [
        "tenant = vc (virtual cluster)",
        "gpus = GPUs listed in the first attempt's detail",
        "duration = sum of attempt run times (retries included); recorded_start/end = "
        "first attempt start / last attempt end",
    ]
    return finish(df, source=str(path), opts=opts, skipped=skipped, notes=notes, rules=rules)
