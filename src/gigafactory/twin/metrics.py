"""Figures of merit of one run, computed with NumPy from the run's raw records.

Everything here is derived from the per-job table, the per-attempt table (one row
per time a job held GPUs) and the node outages of a :class:`SimResult`; nothing is
sampled during the run. Step functions (GPUs held, demand, queue length) are exact
between events.

Definitions (each figure is compared with its bound where one exists):

- *utilisation*: GPU-seconds held by jobs during the arrival window over the
  facility's GPU-seconds in that window (bound: ``min(1, offered load)``);
  ``utilisation_makespan`` uses the whole run instead (it includes the drain tail);
- *goodput*: the useful part of that (work that counts towards completion; lost
  work, start overhead and preemption grace are excluded);
- *waiting time*: first start − submission, for jobs that started; *JCT*: end −
  submission, for completed jobs (bound: each job's own runtime, the infinite
  cluster); *bounded slowdown*: ``max(1, JCT / max(runtime, 10 s))``;
- *guarantee violation*: per partner, the GPU-seconds by which it held fewer than
  ``min(demand, guarantee)`` GPUs (demand = GPUs of its running and pending jobs),
  counted only after the deficit has lasted longer than the reclaim deadline;
- *share satisfaction*: per tenant, ``Σ min(held, entitlement) / Σ entitlement``
  on a time grid, where the entitlement is the core's hierarchical max-min share
  of the up capacity given everyone's demand at that time; fairness is Jain's index
  ``(Σx)² / (n Σx²)`` over tenants with an entitlement;
- *finish-time fairness* ρ (Themis): per project, the mean over its completed jobs
  of JCT / T_alone, where T_alone = runtime × max(1, GPUs / (its normalised share ×
  capacity)) is the time on its own static share of the facility; ρ ≤ 1 means
  sharing did not hurt it;
- *energy*: held GPU-seconds at full power plus idle up GPU-seconds at
  ``idle_power_fraction`` of full power (down nodes draw nothing), times the PUE;
  *cost*: GPU-hours held at the facility's price per GPU-hour, plus energy cost.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from gigafactory.core.shares import entitlements
from gigafactory.twin.simulate import SimResult

FloatArray = npt.NDArray[np.float64]
IDLE_POWER_FRACTION = 0.2
SLOWDOWN_FLOOR_S = 10.0
SIZE_BANDS: tuple[tuple[int, int, str], ...] = (
    (1, 1, "1"), (2, 8, "2-8"), (9, 64, "9-64"), (65, 512, "65-512"),
    (513, 4096, "513-4096"), (4097, 1 << 62, "4097+"),
)
MAX_GRID_CELLS = 4_000_000  # grid points × tenants kept in memory at once


def size_band(gpus: npt.NDArray[np.int64]) -> pd.Categorical:
    labels = [b[2] for b in SIZE_BANDS]
    edges = np.array([b[1] for b in SIZE_BANDS])
    return pd.Categorical.from_codes(np.searchsorted(edges, gpus, side="left"), categories=labels)


def _pct(x: FloatArray, q: float) -> float:
    return float(np.percentile(x, q)) if x.size else math.nan


def _window(r: SimResult) -> tuple[float, float]:
    w = r.workload
    if w.window is not None:
        lo, hi = w.window
    elif len(w):
        lo, hi = float(w.submit[0]), float(w.submit[-1])
    else:
        lo, hi = 0.0, r.end_time
    if hi <= lo:
        hi = max(r.end_time, lo + 1.0)
    return lo, min(hi, max(r.end_time, lo + 1.0))


def _clipped(start: FloatArray, end: FloatArray, lo: float, hi: float) -> FloatArray:
    out: FloatArray = np.maximum(0.0, np.minimum(end, hi) - np.maximum(start, lo))
    return out


def steps_at(times: FloatArray, deltas: FloatArray, grid: FloatArray,
             groups: npt.NDArray[np.int64] | None = None, n_groups: int = 1) -> FloatArray:
    """Value of a step function (sum of ``deltas`` at ``times``) at each grid point.

    With ``groups`` the result has one column per group. Events at exactly a grid
    point count (the value just after the event).
    """
    idx = np.searchsorted(grid, times, side="left")
    if groups is None:
        acc = np.bincount(idx, weights=deltas, minlength=grid.size + 1)[: grid.size]
        return np.cumsum(acc)
    acc2 = np.zeros((grid.size + 1, n_groups))
    np.add.at(acc2, (idx, groups), deltas)
    return np.cumsum(acc2[: grid.size], axis=0)


def _intervals(r: SimResult) -> dict[str, Any]:
    """Held intervals (attempts) and demand intervals (queued → end), with their jobs."""
    a = r.attempts
    j = r.jobs
    job = a["job"].to_numpy()
    pend = np.flatnonzero(j["status"].to_numpy() == "pending")
    return {
        "held_job": job, "held_start": a["start"].to_numpy(), "held_end": a["end"].to_numpy(),
        "dem_job": np.concatenate([job, pend]),
        "dem_start": np.concatenate([a["queued_since"].to_numpy(), j["pending_since"].to_numpy()[pend]]),
        "dem_end": np.concatenate([a["end"].to_numpy(), np.full(pend.size, r.end_time)]),
        "queue_start": np.concatenate([a["queued_since"].to_numpy(), j["pending_since"].to_numpy()[pend]]),
        "queue_end": np.concatenate([a["start"].to_numpy(), np.full(pend.size, r.end_time)]),
        "queue_job": np.concatenate([job, pend]),
    }


def guarantee_violations(r: SimResult) -> pd.DataFrame:
    """Per partner: guarantee, mean held and demand, deficit and violation GPU-hours (exact)."""
    tree = r.tree
    iv = _intervals(r)
    part_codes = r.jobs["partner"].cat.codes.to_numpy()
    deadline = r.config.scheduler.reclaim_deadline
    t0 = float(r.workload.submit[0]) if len(r.workload) else 0.0
    span = max(r.end_time - t0, 1e-9)
    gp = r.jobs["gpus"].to_numpy().astype(np.float64)
    hj, dj = iv["held_job"], iv["dem_job"]
    times_all = np.concatenate([iv["held_start"], iv["held_end"], iv["dem_start"], iv["dem_end"]])
    who = part_codes[np.concatenate([hj, hj, dj, dj])]
    zh, zd = np.zeros(hj.size), np.zeros(dj.size)
    da_all = np.concatenate([gp[hj], -gp[hj], zd, zd])
    dd_all = np.concatenate([zh, zh, gp[dj], -gp[dj]])
    order = np.lexsort((times_all, who))  # by partner, then time (stable)
    times_all, who, da_all, dd_all = times_all[order], who[order], da_all[order], dd_all[order]
    bounds = np.searchsorted(who, np.arange(len(tree.partners) + 1))
    rows = []
    for p, name in enumerate(tree.partners):
        g = float(tree.guarantee[tree.index[name]])
        sl = slice(bounds[p], bounds[p + 1])
        times, d_alloc, d_dem = times_all[sl], da_all[sl], dd_all[sl]
        alloc = np.cumsum(d_alloc)
        dem = np.cumsum(d_dem)
        last = np.append(times[1:] != times[:-1], True)[: times.size]  # the state after each instant
        times, alloc, dem = times[last], alloc[last], dem[last]
        seg_end = np.append(times[1:], r.end_time)
        length = np.maximum(0.0, seg_end - times)
        deficit = np.maximum(0.0, np.minimum(dem, g) - alloc)
        deficit[deficit < 1e-9] = 0.0
        in_def = deficit > 0
        starts = in_def & ~np.concatenate([[False], in_def[:-1]])
        counted = np.zeros(times.size)
        if starts.any():
            episode = np.maximum(np.cumsum(starts) - 1, 0)
            since = times[starts][episode]  # when the deficit episode began
            counted = np.where(in_def, np.maximum(0.0, seg_end - np.maximum(times, since + deadline)), 0.0)
        rows.append({
            "partner": name,
            "guarantee_gpus": g,
            "mean_held_gpus": float(np.dot(alloc, length) / span),
            "mean_demand_gpus": float(np.dot(dem, length) / span),
            "deficit_gpu_hours": float(np.dot(deficit, length) / 3600.0),
            "violation_gpu_hours": float(np.dot(deficit, counted) / 3600.0),
        })
    return pd.DataFrame(rows, columns=["partner", "guarantee_gpus", "mean_held_gpus", "mean_demand_gpus",
                                       "deficit_gpu_hours", "violation_gpu_hours"])


def timeseries(r: SimResult, points: int = 1000) -> pd.DataFrame:
    """State on an even time grid: GPUs held and up, queue, per-partner held/demand/entitlement."""
    t0 = float(r.workload.submit[0]) if len(r.workload) else 0.0
    t1 = max(r.end_time, t0 + 1.0)
    tree = r.tree
    n_proj = len(r.workload.projects)
    points = max(2, min(points, MAX_GRID_CELLS // max(1, n_proj)))
    grid = np.linspace(t0, t1, points)
    iv = _intervals(r)
    gpus = r.jobs["gpus"].to_numpy().astype(np.float64)
    proj = r.jobs["project"].cat.codes.to_numpy()

    def step(start: FloatArray, end: FloatArray, w: FloatArray, groups: Any = None, n: int = 1) -> FloatArray:
        g2 = None if groups is None else np.concatenate([groups, groups])
        return steps_at(np.concatenate([start, end]), np.concatenate([w, -w]), grid, g2, n)

    hj, qj, dj = iv["held_job"], iv["queue_job"], iv["dem_job"]
    out = pd.DataFrame({"t": grid})
    out["busy_gpus"] = step(iv["held_start"], iv["held_end"], gpus[hj])
    o = r.outages
    down = step(o["down"].to_numpy(), np.nan_to_num(o["up"].to_numpy(), nan=np.inf),
                r.facility.node_gpus[o["node"].to_numpy()].astype(np.float64)) if len(o) else 0.0
    out["up_gpus"] = r.facility.total_gpus - down
    out["utilisation"] = out["busy_gpus"] / r.facility.total_gpus
    out["pending_jobs"] = step(iv["queue_start"], iv["queue_end"], np.ones(qj.size))
    out["pending_gpus"] = step(iv["queue_start"], iv["queue_end"], gpus[qj])
    held_p = step(iv["held_start"], iv["held_end"], gpus[hj], proj[hj], n_proj)
    dem_p = step(iv["dem_start"], iv["dem_end"], gpus[dj], proj[dj], n_proj)
    # entitlements: the core's water-filling, from per-project demand at each grid point
    leaf_of = np.array([tree.index[p] for p in r.workload.projects], dtype=np.int64)
    ent_nodes = np.zeros((points, len(tree)))
    demand_nodes = np.zeros(len(tree))
    up = out["up_gpus"].to_numpy()
    for k in range(points):
        demand_nodes[:] = 0.0
        demand_nodes[leaf_of] = dem_p[k]
        ent_nodes[k] = entitlements(tree, float(up[k]), demand_nodes)
    part_of = np.array([tree.path[i][0] for i in leaf_of], dtype=np.int64)
    for name in tree.partners:
        i = tree.index[name]
        sel = part_of == i
        out[f"held:{name}"] = held_p[:, sel].sum(axis=1)
        out[f"demand:{name}"] = dem_p[:, sel].sum(axis=1)
        out[f"entitled:{name}"] = ent_nodes[:, i]
        out[f"guarantee:{name}"] = float(tree.guarantee[i])
    out.attrs["project_held"] = held_p
    out.attrs["project_entitled"] = ent_nodes[:, leaf_of]
    return out


def jain(x: FloatArray) -> float:
    x = x[np.isfinite(x)]
    if not x.size or not np.any(x):
        return math.nan
    return float(x.sum() ** 2 / (x.size * np.square(x).sum()))


def _satisfaction(held: FloatArray, ent: FloatArray) -> FloatArray:
    num = np.minimum(held, ent).sum(axis=0)
    den = ent.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 1e-9, num / den, np.nan)


def job_stats(j: pd.DataFrame) -> dict[str, float]:
    """Waiting time, JCT and bounded slowdown of a set of jobs."""
    started = j[j["first_start"].notna()]
    wait = (started["first_start"] - started["submit"]).to_numpy()
    done = j[j["status"] == "completed"]
    jct = (done["end"] - done["submit"]).to_numpy()
    run = done["duration"].to_numpy()
    bsld = np.maximum(1.0, jct / np.maximum(run, SLOWDOWN_FLOOR_S))
    return {
        "jobs": float(len(j)), "completed": float(len(done)),
        "wait_mean_s": float(wait.mean()) if wait.size else math.nan,
        "wait_p50_s": _pct(wait, 50), "wait_p95_s": _pct(wait, 95), "wait_p99_s": _pct(wait, 99),
        "jct_mean_s": float(jct.mean()) if jct.size else math.nan,
        "jct_p50_s": _pct(jct, 50), "jct_p95_s": _pct(jct, 95),
        "jct_bound_mean_s": float(run.mean()) if run.size else math.nan,
        "bounded_slowdown_mean": float(bsld.mean()) if bsld.size else math.nan,
        "bounded_slowdown_p95": _pct(bsld, 95),
    }


def group_stats(j: pd.DataFrame, by: str | pd.Categorical) -> pd.DataFrame:
    key = j[by] if isinstance(by, str) else by
    rows = []
    for label, sub in j.groupby(key, observed=True, sort=True):
        rows.append({"group": str(label), **job_stats(sub)})
    return pd.DataFrame(rows)


def finish_time_fairness(r: SimResult) -> pd.DataFrame:
    """Themis' ρ per project (see the module docstring)."""
    j = r.jobs[r.jobs["status"] == "completed"]
    tree = r.tree
    cap = r.facility.total_gpus
    share = np.array([tree.share[tree.index[p]] for p in r.workload.projects])
    own = np.maximum(share[j["project"].cat.codes.to_numpy()] * cap, 1e-9)
    alone = j["duration"].to_numpy() * np.maximum(1.0, j["gpus"].to_numpy() / own)
    rho = (j["end"] - j["submit"]).to_numpy() / alone
    df = pd.DataFrame({"project": j["project"].astype(str).to_numpy(), "rho": rho})
    return df.groupby("project", sort=True)["rho"].mean().reset_index()


def ks_distance(a: FloatArray, b: FloatArray) -> float:
    """Two-sample Kolmogorov–Smirnov statistic: the largest gap between the two ECDFs."""
    a, b = np.sort(np.asarray(a, dtype=np.float64)), np.sort(np.asarray(b, dtype=np.float64))
    if not a.size or not b.size:
        return math.nan
    x = np.concatenate([a, b])
    fa = np.searchsorted(a, x, side="right") / a.size
    fb = np.searchsorted(b, x, side="right") / b.size
    return float(np.max(np.abs(fa - fb)))


def wait_comparison(r: SimResult) -> dict[str, Any] | None:
    """Simulated against recorded waiting time (recorded start − submit), when the trace has it.

    Only jobs that started in both the trace and the run are compared.
    """
    j = r.jobs
    if "recorded_start" not in j.columns:
        return None
    both = j[j["recorded_start"].notna() & j["first_start"].notna()]
    if both.empty:
        return None
    sim = (both["first_start"] - both["submit"]).to_numpy()
    rec = (both["recorded_start"] - both["submit"]).to_numpy()
    out: dict[str, Any] = {"jobs_compared": len(both), "ks_distance": ks_distance(sim, rec)}
    for name, x in (("simulated", sim), ("recorded", rec)):
        out[name] = {"mean_s": float(x.mean()), "p50_s": _pct(x, 50), "p90_s": _pct(x, 90),
                     "p99_s": _pct(x, 99), "max_s": float(x.max()), "share_zero": float(np.mean(x <= 0))}
    for floor in (60.0, 600.0):
        s2, r2 = sim[sim > floor], rec[rec > floor]
        out[f"ks_distance_waits_over_{int(floor)}s"] = ks_distance(s2, r2)
        out[f"share_waits_over_{int(floor)}s"] = {"simulated": float(np.mean(sim > floor)),
                                                  "recorded": float(np.mean(rec > floor))}
    q = np.linspace(0, 100, 200)
    out["cdf"] = {"simulated": np.percentile(sim, q).tolist(), "recorded": np.percentile(rec, q).tolist()}
    return out


def summarise(r: SimResult, ts: pd.DataFrame | None = None,
              idle_power_fraction: float = IDLE_POWER_FRACTION) -> dict[str, Any]:
    """The run's headline figures (the ``summary.json`` of a run)."""
    if ts is None:
        ts = timeseries(r)
    j, a, f = r.jobs, r.attempts, r.facility
    cap = f.total_gpus
    lo, hi = _window(r)
    t0 = float(r.workload.submit[0]) if len(r.workload) else 0.0
    makespan = max(r.end_time - t0, 1e-9)
    st, en, g = a["start"].to_numpy(), a["end"].to_numpy(), a["gpus"].to_numpy().astype(np.float64)
    held_each = g * (en - st)
    with np.errstate(invalid="ignore", divide="ignore"):
        useful_frac = np.where(held_each > 0, a["useful_gpu_s"].to_numpy() / held_each, 0.0)
    held_win = g * _clipped(st, en, lo, hi)
    o = r.outages
    down_gpu_s = float(np.dot(f.node_gpus[o["node"].to_numpy()],
                              np.nan_to_num(o["up"].to_numpy(), nan=r.end_time) - o["down"].to_numpy())) if len(o) else 0.0
    held = float(held_each.sum())
    useful = float(a["useful_gpu_s"].sum())
    lost = float(a["lost_gpu_s"].sum())
    offered = r.workload.offered_load(cap)
    stats = job_stats(j)
    busy_w = float(np.dot(held_each, a["watts"].to_numpy()))
    idle_gpu_s = max(0.0, cap * makespan - down_gpu_s - held)
    mean_w = float(f.watts_per_gpu().mean())
    energy_kwh = (busy_w + idle_gpu_s * mean_w * idle_power_fraction) * f.spec.pue / 3.6e6
    gv = guarantee_violations(r)
    held_p = ts.attrs["project_held"]
    ent_p = ts.attrs["project_entitled"]
    sat_proj = _satisfaction(held_p, ent_p)
    part_cols = [c for c in ts.columns if c.startswith("held:")]
    sat_part = _satisfaction(ts[part_cols].to_numpy(),
                             ts[[c.replace("held:", "entitled:") for c in part_cols]].to_numpy())
    rho = finish_time_fairness(r)["rho"].to_numpy()
    lost_by = a.groupby("reason", observed=False)["lost_gpu_s"].sum()
    completed = int(stats["completed"])
    return {
        "facility": f.name, "gpus": cap, "policy": r.config.policy, "workload": r.workload.name,
        "jobs": len(j), "jobs_completed": completed,
        "jobs_unfinished": len(j) - completed,
        "stalled": r.stalled,
        "offered_load": offered,
        "utilisation": float(held_win.sum()) / (cap * (hi - lo)),
        "utilisation_bound": min(1.0, offered),
        "goodput": float(np.dot(held_win, useful_frac)) / (cap * (hi - lo)),
        "utilisation_makespan": held / (cap * makespan),
        "goodput_makespan": useful / (cap * makespan),
        "window_s": [lo, hi], "makespan_s": makespan,
        **{k: v for k, v in stats.items() if k not in ("jobs", "completed")},
        "jct_over_bound": stats["jct_mean_s"] / stats["jct_bound_mean_s"] if completed else math.nan,
        "jain_fairness_projects": jain(sat_proj),
        "jain_fairness_partners": jain(sat_part),
        "finish_time_fairness_rho_max": float(np.max(rho)) if rho.size else math.nan,
        "finish_time_fairness_rho_median": float(np.median(rho)) if rho.size else math.nan,
        "guarantee_violation_gpu_hours": float(gv["violation_gpu_hours"].sum()),
        "guarantee_deficit_gpu_hours": float(gv["deficit_gpu_hours"].sum()),
        "preemptions": int(j["preemptions"].sum()),
        "jobs_preempted": int((j["preemptions"] > 0).sum()),
        "node_failures": len(o),
        "job_interruptions": int(j["failures"].sum()),
        "held_gpu_hours": held / 3600.0,
        "useful_gpu_hours": useful / 3600.0,
        "lost_gpu_hours": lost / 3600.0,
        "lost_gpu_hours_preemption": float(lost_by.get("preempted", 0.0)) / 3600.0,
        "lost_gpu_hours_failures": float(lost_by.get("node-failure", 0.0)) / 3600.0,
        "overhead_gpu_hours": float(a["overhead_gpu_s"].sum()) / 3600.0,
        "energy_kwh": energy_kwh,
        "energy_cost_eur": energy_kwh * f.spec.energy_price_per_kwh,
        "cost_eur": held / 3600.0 * f.spec.cost_per_gpu_hour,
        "lost_cost_eur": lost / 3600.0 * f.spec.cost_per_gpu_hour,
        "events": int(sum(r.events.values())),
        "scheduling_cycles": r.cycles,
        "events_by_kind": r.events,
        "wall_s": r.wall_s,
        "events_per_s": sum(r.events.values()) / r.wall_s if r.wall_s > 0 else math.nan,
    }
