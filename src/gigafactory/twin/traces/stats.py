"""Summary figures of a canonical trace: what ``gigafactory trace stats`` prints.

Everything is computed with vectorised pandas operations and returned as plain Python
numbers (JSON-ready). "Offered" GPU-hours are ``gpus x duration`` summed: the work the
trace asks for, whatever the facility; the mean offered GPUs are that work spread over
the arrival span (the GPUs a facility would need to serve every job on arrival, on average).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

#: Gang-size bands, inclusive, in GPUs.
SIZE_BANDS: tuple[tuple[int, int | None], ...] = (
    (1, 1), (2, 8), (9, 64), (65, 512), (513, 4096), (4097, None),
)
PERCENTILES: tuple[int, ...] = (10, 50, 90, 99)


def band_label(lo: int, hi: int | None) -> str:
    if hi is None:
        return f">= {lo}"
    return str(lo) if lo == hi else f"{lo}-{hi}"


def trace_stats(df: pd.DataFrame) -> dict[str, Any]:
    """Jobs, tenants, gang sizes, size bands, durations, offered GPU-hours, span, tenants."""
    n = len(df)
    gpus = df["gpus"].to_numpy(dtype=np.int64)
    dur = df["duration"].to_numpy(dtype=np.float64)
    submit = df["submit_time"].to_numpy(dtype=np.float64)
    gpu_h = gpus * dur / 3600.0
    total_gpu_h = float(gpu_h.sum())
    span = float(submit.max() - submit.min()) if n else 0.0
    out: dict[str, Any] = {
        "jobs": n,
        "tenants": int(df["tenant"].nunique()),
        "gpus_per_job": _summary(gpus),
        "duration_s": {
            **{f"p{p}": float(np.percentile(dur, p)) if n else None for p in PERCENTILES},
            "mean": float(dur.mean()) if n else None,
            "max": float(dur.max()) if n else None,
        },
        "offered_gpu_hours": total_gpu_h,
        "span_s": span,
        "last_end_s": float((submit + dur).max()) if n else 0.0,
        "mean_offered_gpus": total_gpu_h * 3600.0 / span if span > 0 else None,
        "size_bands": [],
        "per_tenant": [],
    }
    for lo, hi in SIZE_BANDS:
        sel = (gpus >= lo) & (gpus <= hi if hi is not None else True)
        jobs = int(sel.sum())
        band_h = float(gpu_h[sel].sum())
        out["size_bands"].append({
            "band": band_label(lo, hi),
            "jobs": jobs,
            "job_share": jobs / n if n else 0.0,
            "gpu_hours": band_h,
            "gpu_hour_share": band_h / total_gpu_h if total_gpu_h else 0.0,
        })
    if n:
        frame = pd.DataFrame({"tenant": df["tenant"].astype(str).to_numpy(), "gpus": gpus,
                              "dur": dur, "gpu_h": gpu_h})
        grouped = frame.groupby("tenant", sort=False).agg(
            jobs=("gpus", "size"), gpu_hours=("gpu_h", "sum"), median_gpus=("gpus", "median"),
            max_gpus=("gpus", "max"), median_duration_s=("dur", "median"),
        )
        grouped = grouped.sort_values(["gpu_hours", "jobs"], ascending=False, kind="stable")
        for tenant, row in grouped.iterrows():
            out["per_tenant"].append({
                "tenant": str(tenant),
                "jobs": int(row["jobs"]),
                "gpu_hours": float(row["gpu_hours"]),
                "gpu_hour_share": float(row["gpu_hours"]) / total_gpu_h if total_gpu_h else 0.0,
                "median_gpus": float(row["median_gpus"]),
                "max_gpus": int(row["max_gpus"]),
                "median_duration_s": float(row["median_duration_s"]),
            })
    return out


def _summary(values: np.ndarray) -> dict[str, float | int | None]:
    if not len(values):
        return {"min": None, "median": None, "mean": None, "max": None}
    return {
        "min": int(values.min()),
        "median": float(np.median(values)),
        "mean": float(values.mean()),
        "max": int(values.max()),
    }


def human_seconds(seconds: float | None) -> str:
    """``45 s``, ``12.5 min``, ``3.2 h``, ``4.1 d``: a duration a person reads at a glance."""
    if seconds is None or not np.isfinite(seconds):
        return "-"
    if seconds < 120:
        return f"{seconds:.3g} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.3g} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.3g} h"
    return f"{seconds / 86400:.3g} d"
