"""Importer ``gavel``: Gavel's Philly-derived per-virtual-cluster traces.

Source: stanford-futuredata/gavel ``scheduler/traces/msr/seed=K/<vc>.trace``: tab-separated,
no header. Two layouts are read, told apart by their number of fields:

- 7 fields (``msr/``): ``job_type, command, num_steps_arg, needs_data_dir, total_steps,
  arrival_time, scale_factor``;
- 10 fields (``physical_cluster/``): ``job_type, command, working_dir, num_steps_arg,
  needs_data_dir, total_steps, scale_factor, priority_weight, SLO, arrival_time``.

Rules (all reported in the import notes):

- PATH is a directory of ``*.trace`` files (one per virtual cluster) or one file. Each
  file is a **tenant**, named by its stem (the VC id). Arrival times of every file start
  at 0 and are overlaid on one clock. In a directory, ``philly.trace`` (the whole-cluster
  trace, the union of the VCs) is left out so no job is counted twice.
- ``job_id`` = ``<vc>/<row>``; ``gpus`` = ``scale_factor``; ``kind`` = ``job_type``.
- ``duration`` = ``total_steps / throughput``, the isolated V100 throughput (steps/s,
  the ``"null"`` entry) of ``simulation_throughputs.json`` for ``(job_type, gpus)``.
  By default the file is looked for beside the trace and up to three folders above it
  (Gavel keeps it next to ``msr/``); ``--throughputs`` names it.
- **Fallback**: the table only lists scale factors 1, 2, 4 and 8 (some job types only 1).
  For a ``(job_type, gpus)`` with no exact entry the throughput is the per-GPU throughput
  at the largest listed scale factor not above ``gpus`` (the smallest listed one if none
  is), times ``gpus``: linear scaling, an optimistic assumption. Rows that used it are
  counted under ``adjusted`` and in the notes; none is dropped.
- ``accelerator`` is left unset: the durations are V100 run times.
"""

from __future__ import annotations

import ast
import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from gigafactory.twin.traces.common import ImportOptions, ImportResult, finish, tag_rows
from gigafactory.twin.traces.schema import (
    ROW_COLUMN,
    SRC_COLUMN,
    Rule,
    TraceError,
    check_input_file,
)

FORMAT = "gavel"
THROUGHPUTS_FILE = "simulation_throughputs.json"
WORKER_TYPE = "v100"
WHOLE_CLUSTER_FILE = "philly.trace"
FIELDS = {
    7: ["job_type", "command", "num_steps_arg", "needs_data_dir", "total_steps",
        "arrival_time", "scale_factor"],
    10: ["job_type", "command", "working_dir", "num_steps_arg", "needs_data_dir", "total_steps",
         "scale_factor", "priority_weight", "slo", "arrival_time"],
}
ADJ_FALLBACK = "no exact throughput entry: linear scaling from the largest listed scale"
UNKNOWN_TYPE = "job type has no V100 throughput entry"


def load(path: Path, opts: ImportOptions) -> ImportResult:
    """Import a directory of per-VC ``.trace`` files, or one file."""
    files, left_out = _trace_files(path)
    tp_path = opts.throughputs or find_throughputs(path)
    table = load_throughputs(tp_path)
    frames = [_read_one(f) for f in files]
    src = pd.concat([f for f in frames if len(f)], ignore_index=True) if any(len(f) for f in frames) else frames[0]
    if not len(src):
        raise TraceError(f"{path}: no jobs in {len(files)} trace file(s)")

    gpus = pd.to_numeric(src["scale_factor"], errors="coerce")
    steps = pd.to_numeric(src["total_steps"], errors="coerce")
    tp, fallback, unknown = _throughputs_for(src["job_type"], gpus, table)
    df = pd.DataFrame({
        "job_id": src["tenant"] + "/" + src[ROW_COLUMN].astype("string"),
        "submit_time": src["arrival_time"],
        "gpus": src["scale_factor"],
        "duration": steps / tp,
        "tenant": src["tenant"],
        "kind": src["job_type"],
        SRC_COLUMN: src[SRC_COLUMN],
        ROW_COLUMN: src[ROW_COLUMN],
    })
    rules = [Rule(f"{UNKNOWN_TYPE} in {tp_path.name}", unknown, lambda i: src["job_type"].iloc[i])]
    adjusted: Counter[str] = Counter()
    n_fb = int(fallback.sum())
    notes = [
        f"tenant = virtual-cluster file name: {len(files)} file(s) under {path}",
        f"duration = total_steps / isolated {WORKER_TYPE.upper()} throughput from {tp_path}",
        "arrival times of every VC file start at 0 and are overlaid on one clock",
        "accelerator left unset: durations are V100 run times",
    ]
    if left_out:
        notes.append(f"left out {left_out}: the whole-cluster trace repeats the VC files' jobs")
    if n_fb:
        adjusted[ADJ_FALLBACK] = n_fb
        by_gpus = Counter(gpus[fallback].astype("int64").tolist())
        spread = ", ".join(f"{g} GPUs: {n}" for g, n in sorted(by_gpus.items()))
        notes.append(
            f"fallback for {n_fb} of {len(df)} rows ({100.0 * n_fb / len(df):.1f}%) with no exact "
            f"(job type, GPUs) entry: per-GPU throughput at the largest listed scale factor "
            f"<= GPUs, times GPUs (linear scaling) [{spread}]"
        )
    return finish(df, source=str(path), opts=opts, notes=notes, adjusted=adjusted, rules=rules)


def _trace_files(path: Path) -> tuple[list[Path], str]:
    if path.is_dir():
        found = sorted(path.glob("*.trace"))
        files = [f for f in found if f.name != WHOLE_CLUSTER_FILE]
        if not files:
            raise TraceError(f"{path}: no per-VC .trace files in this directory")
        return files, (WHOLE_CLUSTER_FILE if len(files) < len(found) else "")
    if not path.exists():
        raise TraceError(f"{path}: no such file or directory")
    return [path], ""


def _read_one(path: Path) -> pd.DataFrame:
    try:
        raw = pd.read_csv(path, sep="\t", header=None, dtype="string", quoting=csv.QUOTE_NONE)
    except pd.errors.EmptyDataError:
        return pd.DataFrame(columns=[*FIELDS[7], "tenant", SRC_COLUMN, ROW_COLUMN])
    except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TraceError(f"{path}: cannot read as a Gavel trace: {first}") from None
    names = FIELDS.get(raw.shape[1])
    if names is None:
        raise TraceError(
            f"{path}: a Gavel trace has 7 or 10 tab-separated fields per line, found {raw.shape[1]}"
        )
    raw.columns = names
    raw["tenant"] = path.stem
    return tag_rows(raw, str(path))


def find_throughputs(path: Path) -> Path:
    """Look for ``simulation_throughputs.json`` beside ``path`` and up to 3 folders above."""
    start = path if path.is_dir() else path.parent
    candidates = [d / THROUGHPUTS_FILE for d in [start, *list(start.resolve().parents)[:3]]]
    for c in candidates:
        if c.is_file():
            return c
    raise TraceError(
        f"{path}: no {THROUGHPUTS_FILE} beside the trace or up to 3 folders above it; "
        "pass --throughputs FILE"
    )


def load_throughputs(path: Path) -> pd.DataFrame:
    """The V100 isolated throughputs as a table ``job_type, scale, throughput``."""
    check_input_file(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TraceError(f"{path}: cannot read as JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get(WORKER_TYPE), dict):
        raise TraceError(f"{path}: no {WORKER_TYPE!r} throughput table in this file")
    rows = []
    for key, entry in data[WORKER_TYPE].items():
        try:
            job_type, scale = ast.literal_eval(key)
            value = float(entry["null"])
        except (ValueError, SyntaxError, TypeError, KeyError):
            raise TraceError(
                f"{path}: {WORKER_TYPE} entry {key!r} is not a ('job type', scale) key "
                'with a numeric "null" throughput'
            ) from None
        rows.append((str(job_type), int(scale), value))
    return pd.DataFrame(rows, columns=["job_type", "scale", "throughput"])


def _throughputs_for(
    job_type: pd.Series, gpus: pd.Series, table: pd.DataFrame
) -> tuple[pd.Series, np.ndarray, np.ndarray]:
    """Throughput per row, the rows that used the fallback, the rows with none at all."""
    tp = np.full(len(job_type), np.nan)
    fallback = np.zeros(len(job_type), dtype=bool)
    g = gpus.to_numpy(dtype="float64", na_value=np.nan)
    jt = job_type.astype("string")
    table = table[table["throughput"] > 0]
    for name, sub in table.groupby("job_type", sort=False):
        rows = (jt == name).to_numpy(dtype=bool, na_value=False) & np.isfinite(g)
        if not rows.any():
            continue
        scales = sub["scale"].to_numpy(dtype="float64")
        values = sub["throughput"].to_numpy(dtype="float64")
        order = np.argsort(scales)
        scales, values = scales[order], values[order]
        want = g[rows]
        # Largest listed scale <= want (the smallest listed one when none is).
        k = np.clip(np.searchsorted(scales, want, side="right") - 1, 0, len(scales) - 1)
        exact = scales[k] == want
        tp[rows] = np.where(exact, values[k], values[k] / scales[k] * want)
        idx = np.flatnonzero(rows)
        fallback[idx[~exact]] = True
    unknown = np.isnan(tp) & jt.notna().to_numpy(dtype=bool) & np.isfinite(g)
    return pd.Series(tp, index=job_type.index), fallback, unknown
