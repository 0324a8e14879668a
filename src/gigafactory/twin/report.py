"""Outputs of a twin run: summary.json, jobs.parquet, timeseries.parquet, report.html.

The report is one self-contained HTML page: plots are matplotlib PNGs embedded as
base64, there is no script and no external link, so it can be mailed or archived.
It shows every figure next to its bound, the plots planners ask for (utilisation and
queue over time, waiting-time CDF per tenant class, each partner's share against its
guarantee, lost work), and lists every assumption the run made.

:func:`analyse` condenses a :class:`SimResult` into a small picklable
:class:`Analysis` (so ``gigafactory compare`` can ship it between processes);
:func:`write_run` and :func:`write_compare` write the files.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from gigafactory.twin.metrics import (
    IDLE_POWER_FRACTION,
    SLOWDOWN_FLOOR_S,
    finish_time_fairness,
    group_stats,
    guarantee_violations,
    size_band,
    summarise,
    timeseries,
    wait_comparison,
)
from gigafactory.twin.simulate import SimResult

CDF_POINTS = 200


@dataclass
class Analysis:
    """What a report needs from one run (small: no per-job rows)."""

    label: str
    summary: dict[str, Any]
    timeseries: pd.DataFrame
    by_class: pd.DataFrame
    by_band: pd.DataFrame
    partners: pd.DataFrame
    wait_cdf: dict[str, np.ndarray]  # tenant class -> waiting-time quantiles (CDF_POINTS)
    lost: pd.DataFrame  # t, cumulative lost GPU-hours by cause
    assumptions: list[str]
    sections: list[tuple[str, str]] = field(default_factory=list)  # extra (title, html)


def analyse(r: SimResult, label: str | None = None, points: int = 1000) -> Analysis:
    ts = timeseries(r, points)
    summary = summarise(r, ts)
    j = r.jobs
    gv = guarantee_violations(r)
    part_cols = [c for c in ts.columns if c.startswith("held:")]
    held = ts[part_cols].to_numpy()
    ent = ts[[c.replace("held:", "entitled:") for c in part_cols]].to_numpy()
    den = ent.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        gv["share_satisfaction"] = np.where(den > 0, np.minimum(held, ent).sum(axis=0) / den, np.nan)
    rho = finish_time_fairness(r)
    summary["by_tenant_class"] = _records(group_stats(j, "tenant_class"))
    summary["by_size_band"] = _records(group_stats(j, size_band(j["gpus"].to_numpy())))
    summary["partners"] = _records(gv)
    started = j[j["first_start"].notna()]
    waits = (started["first_start"] - started["submit"]).to_numpy()
    q = np.linspace(0, 100, CDF_POINTS)
    cdf = {"all": np.percentile(waits, q)} if waits.size else {}
    for cls, sub in started.groupby("tenant_class", observed=True, sort=True):
        w = (sub["first_start"] - sub["submit"]).to_numpy()
        cdf[str(cls)] = np.percentile(w, q)
    a = r.attempts.sort_values("end", kind="stable")
    lost = pd.DataFrame({"t": a["end"].to_numpy()})
    for reason, col in (("preempted", "preemption"), ("node-failure", "failures")):
        lost[col] = np.cumsum(np.where(a["reason"] == reason, a["lost_gpu_s"], 0.0)) / 3600.0
    sections: list[tuple[str, str]] = []
    val = wait_comparison(r)
    if val is not None:
        val_cdf = val.pop("cdf")
        summary["validation"] = val
        sections.append(("Validation against the recorded trace", validation_html(val, val_cdf)))
    return Analysis(
        label=label or f"{summary['policy']} on {summary['facility']}",
        summary=summary, timeseries=ts, by_class=group_stats(j, "tenant_class"),
        by_band=group_stats(j, size_band(j["gpus"].to_numpy())), partners=gv.merge(
            rho.rename(columns={"project": "partner", "rho": "rho_mean"}), on="partner", how="left"),
        wait_cdf=cdf, lost=lost, assumptions=[*r.assumptions, *metric_assumptions(r)], sections=sections,
    )


def metric_assumptions(r: SimResult) -> list[str]:
    """How the figures are computed (see :mod:`gigafactory.twin.metrics`)."""
    spec = r.facility.spec
    return [
        "utilisation and goodput are measured over the arrival window and compared with "
        "min(1, offered load); the whole-run figures include the drain after the last arrival",
        "JCT is compared with the infinite-cluster bound: each job's own runtime; bounded slowdown "
        f"uses a {SLOWDOWN_FLOOR_S:g} s floor",
        "guarantee violations count the GPU-hours a partner held fewer than min(demand, guarantee) "
        f"GPUs, after the first {r.config.scheduler.reclaim_deadline:g} s (the reclaim deadline) of "
        "each shortfall",
        "share satisfaction compares held GPUs with the core's entitlement (water-filling of the up "
        "capacity over demand) on a time grid; fairness is Jain's index over it",
        "finish-time fairness ρ: JCT over the time on the project's static share of the facility",
        f"energy: busy GPUs at full power, idle up GPUs at {IDLE_POWER_FRACTION:.0%} of it, down nodes "
        f"at none, times the PUE {spec.pue:g}; GPU-hours priced at {spec.cost_per_gpu_hour:g} EUR, "
        f"energy at {spec.energy_price_per_kwh:g} EUR/kWh",
    ]


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: _plain(v) for k, v in row.items()} for row in df.to_dict(orient="records")]


def _plain(v: Any) -> Any:
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _clean(v: Any) -> Any:
    """JSON-safe copy: NaN and infinities become null, NumPy values plain Python."""
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_clean(x) for x in v]
    if isinstance(v, np.ndarray):
        return [_clean(x) for x in v.tolist()]
    return _plain(v)


def _json_default(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return str(v)


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".tmp-{path.name}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_run(r: SimResult, out: str | Path, label: str | None = None,
              sections: Sequence[tuple[str, str]] = ()) -> Analysis:
    """Write the four outputs of one run into ``out`` (created if needed)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    an = analyse(r, label)
    an.sections.extend(sections)
    write_summary(an, out / "summary.json")
    jobs = r.jobs.copy()
    jobs["wait_s"] = jobs["first_start"] - jobs["submit"]
    jobs["jct_s"] = jobs["end"] - jobs["submit"]
    jobs.to_parquet(out / ".tmp-jobs.parquet", index=False)
    os.replace(out / ".tmp-jobs.parquet", out / "jobs.parquet")
    ts = an.timeseries.copy()
    ts.attrs = {}
    ts.to_parquet(out / ".tmp-timeseries.parquet", index=False)
    os.replace(out / ".tmp-timeseries.parquet", out / "timeseries.parquet")
    _atomic_write(out / "report.html", render_run(an).encode())
    return an


def write_summary(an: Analysis, path: Path) -> None:
    clean = _clean(an.summary)
    clean["assumptions"] = list(an.assumptions)
    text = json.dumps(clean, indent=2, default=_json_default, allow_nan=False)
    _atomic_write(path, (text + "\n").encode())


# ---------------------------------------------------------------- rendering
def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=96, bbox_inches="tight")
    return f'<img alt="plot" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def _days(t: np.ndarray) -> np.ndarray:
    return np.asarray(t, dtype=np.float64) / 86400.0


def plot_utilisation(runs: Sequence[Analysis]) -> str:
    fig = Figure(figsize=(9, 5))
    ax1, ax2 = fig.subplots(2, 1, sharex=True)
    for an in runs:
        ts = an.timeseries
        ax1.plot(_days(ts["t"]), ts["utilisation"], label=an.label, lw=1)
        ax2.plot(_days(ts["t"]), ts["pending_jobs"], label=an.label, lw=1)
    if len(runs) == 1:
        ts = runs[0].timeseries
        ax1.plot(_days(ts["t"]), ts["up_gpus"] / ts["up_gpus"].max(), "k:", lw=0.8, label="up capacity")
        bound = runs[0].summary["utilisation_bound"]
        ax1.axhline(bound, color="grey", ls="--", lw=0.8, label=f"bound min(1, offered load) = {bound:.2f}")
    ax1.set_ylabel("utilisation")
    ax1.set_ylim(0, 1.05)
    ax1.legend(fontsize=7, loc="lower right")
    ax2.set_ylabel("pending jobs")
    ax2.set_xlabel("simulated time (days)")
    fig.suptitle("Utilisation and queue length")
    return _png(fig)


def plot_wait_cdf(runs: Sequence[Analysis]) -> str:
    fig = Figure(figsize=(9, 4))
    ax = fig.subplots()
    y = np.linspace(0, 1, CDF_POINTS)
    for an in runs:
        for cls, qv in an.wait_cdf.items():
            if len(runs) > 1 and cls != "all":
                continue
            label = cls if len(runs) == 1 else an.label
            ax.plot(np.maximum(qv, 1.0), y, label=label, lw=1.5 if cls == "all" else 1)
    ax.set_xscale("log")
    ax.set_xlabel("waiting time (s, log; 0 shown at 1 s)")
    ax.set_ylabel("fraction of jobs")
    ax.set_title("Waiting-time CDF" + (" per tenant class" if len(runs) == 1 else " (all jobs)"))
    ax.legend(fontsize=7)
    return _png(fig)


def plot_partners(an: Analysis) -> str:
    ts = an.timeseries
    names = [c.split(":", 1)[1] for c in ts.columns if c.startswith("held:")]
    shown = names[:12]
    fig = Figure(figsize=(9, 2.2 * len(shown) + 0.5))
    axes = fig.subplots(len(shown), 1, sharex=True, squeeze=False)[:, 0]
    t = _days(ts["t"])
    for ax, name in zip(axes, shown, strict=True):
        ax.fill_between(t, ts[f"held:{name}"], step="post", alpha=0.4, label="held")
        ax.plot(t, ts[f"demand:{name}"], lw=0.8, label="demand")
        ax.plot(t, ts[f"entitled:{name}"], lw=0.8, ls="--", label="entitlement")
        ax.plot(t, ts[f"guarantee:{name}"], "k", lw=1, label="guarantee")
        ax.set_ylabel(f"{name}\nGPUs", fontsize=8)
    axes[0].legend(fontsize=7, ncol=4, loc="upper right")
    axes[-1].set_xlabel("simulated time (days)")
    more = f" (first {len(shown)} of {len(names)})" if len(names) > len(shown) else ""
    fig.suptitle(f"Each partner's share against its guarantee{more}")
    return _png(fig)


def plot_lost(runs: Sequence[Analysis]) -> str:
    fig = Figure(figsize=(9, 3.5))
    ax = fig.subplots()
    for an in runs:
        lo = an.lost
        prefix = "" if len(runs) == 1 else f"{an.label}: "
        ax.plot(_days(lo["t"]), lo["preemption"], label=prefix + "preemption", lw=1)
        ax.plot(_days(lo["t"]), lo["failures"], label=prefix + "node failures", lw=1)
    ax.set_xlabel("simulated time (days)")
    ax.set_ylabel("lost GPU-hours (cumulative)")
    ax.set_title("Lost work (work since the last checkpoint, redone)")
    ax.legend(fontsize=7)
    return _png(fig)


def validation_html(val: dict[str, Any], cdf: dict[str, list[float]]) -> str:
    """KS distance, quantiles side by side, and both waiting-time CDFs."""
    fig = Figure(figsize=(9, 4))
    ax = fig.subplots()
    y = np.linspace(0, 1, len(cdf["simulated"]))
    for name, style in (("recorded", "k-"), ("simulated", "C0-")):
        ax.plot(np.maximum(np.asarray(cdf[name]), 1.0), y, style, label=name, lw=1.5)
    ax.set_xscale("log")
    ax.set_xlabel("waiting time (s, log; 0 shown at 1 s)")
    ax.set_ylabel("fraction of jobs")
    ax.set_title(f"Waiting time: simulated vs recorded (KS distance {val['ks_distance']:.3f})")
    ax.legend()
    rows = pd.DataFrame([{"": name, **{k: v for k, v in val[name].items()}} for name in ("recorded", "simulated")])
    text = (f"<p>{val['jobs_compared']:,} jobs that started both in the trace and in the twin. "
            f"Two-sample Kolmogorov–Smirnov distance between the waiting-time distributions: "
            f"<b>{val['ks_distance']:.3f}</b> (waits over 60 s only: "
            f"{_fmt(val['ks_distance_waits_over_60s'])}; over 600 s: {_fmt(val['ks_distance_waits_over_600s'])}).</p>")
    return text + _png(fig) + _table(rows)


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float | np.floating):
        v = float(v)
        if not math.isfinite(v):
            return "–"
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        return f"{v:.3g}"
    return html.escape(str(v))


def _table(df: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(v)}</td>" for v in row) + "</tr>" for row in df.itertuples(index=False))
    return f"<table><tr>{head}</tr>{body}</table>"


HEADLINE: tuple[tuple[str, str, str | None], ...] = (
    ("utilisation", "utilisation (arrival window)", "utilisation_bound"),
    ("goodput", "goodput (arrival window)", "utilisation_bound"),
    ("utilisation_makespan", "utilisation (whole run)", None),
    ("offered_load", "offered load", None),
    ("jobs_completed", "jobs completed", "jobs"),
    ("wait_p50_s", "waiting time p50 (s)", None),
    ("wait_p95_s", "waiting time p95 (s)", None),
    ("wait_p99_s", "waiting time p99 (s)", None),
    ("jct_mean_s", "JCT mean (s)", "jct_bound_mean_s"),
    ("bounded_slowdown_mean", "bounded slowdown mean", None),
    ("jain_fairness_projects", "Jain's index, projects' share satisfaction", None),
    ("jain_fairness_partners", "Jain's index, partners' share satisfaction", None),
    ("finish_time_fairness_rho_max", "finish-time fairness ρ, worst project", None),
    ("guarantee_violation_gpu_hours", "guarantee violations (GPU-h beyond the reclaim deadline)", None),
    ("preemptions", "preemptions", None),
    ("lost_gpu_hours", "lost GPU-hours", None),
    ("overhead_gpu_hours", "overhead GPU-hours (start, grace)", None),
    ("node_failures", "node failures", None),
    ("energy_kwh", "energy (kWh, incl. PUE)", None),
    ("cost_eur", "GPU-hours held at list price (EUR)", None),
    ("energy_cost_eur", "energy cost (EUR)", None),
    ("makespan_s", "makespan (s)", None),
    ("events_per_s", "simulator events per second", None),
)


def _headline(runs: Sequence[Analysis]) -> str:
    cols = "".join(f"<th>{html.escape(an.label)}</th>" for an in runs)
    rows = []
    for key, label, bound in HEADLINE:
        cells = ""
        for an in runs:
            s = an.summary
            text = _fmt(s.get(key))
            if bound is not None and s.get(bound) is not None:
                text += f' <span class="b">/ bound {_fmt(s.get(bound))}</span>'
            cells += f"<td>{text}</td>"
        rows.append(f"<tr><th>{html.escape(label)}</th>{cells}</tr>")
    return f"<table><tr><th></th>{cols}</tr>{''.join(rows)}</table>"


STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:13px}td,th{border:1px solid #ccc;padding:3px 7px;
text-align:right}th{background:#f4f4f4}.b{color:#777;font-size:11px}img{max-width:100%}
li{font-size:13px;margin:2px 0}h2{border-bottom:1px solid #ddd}"""


def _page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>")


def _assumptions(items: Sequence[str]) -> str:
    return "<ul>" + "".join(f"<li>{html.escape(a)}</li>" for a in items) + "</ul>"


def render_run(an: Analysis) -> str:
    s = an.summary
    intro = (f"<p>Facility <b>{html.escape(str(s['facility']))}</b> ({s['gpus']:,} GPUs), policy "
             f"<b>{html.escape(str(s['policy']))}</b>, workload <code>{html.escape(str(s['workload']))}</code>: "
             f"{s['jobs']:,} jobs, {s['events']:,} events in {s['wall_s']:.1f} s.</p>")
    if s.get("stalled"):
        intro += f"<p><b>Stalled:</b> {html.escape(str(s['stalled']))}</p>"
    body = [intro, "<h2>Headline figures and their bounds</h2>", _headline([an]),
            "<h2>Utilisation and queue</h2>", plot_utilisation([an]),
            "<h2>Waiting time</h2>", plot_wait_cdf([an]),
            "<h3>Per tenant class</h3>", _table(an.by_class),
            "<h3>Per job size (GPUs)</h3>", _table(an.by_band),
            "<h2>Partners: share against guarantee</h2>", plot_partners(an), _table(an.partners),
            "<h2>Lost work</h2>", plot_lost([an])]
    for title, section in an.sections:
        body += [f"<h2>{html.escape(title)}</h2>", section]
    body += ["<h2>Assumptions</h2>", _assumptions(an.assumptions)]
    return _page(f"gigafactory twin: {an.label}", "".join(body))


def render_compare(runs: Sequence[Analysis], title: str) -> str:
    body = ["<h2>Headline figures and their bounds</h2>", _headline(runs),
            "<h2>Utilisation and queue</h2>", plot_utilisation(runs),
            "<h2>Waiting time</h2>", plot_wait_cdf(runs),
            "<h2>Lost work</h2>", plot_lost(runs)]
    for an in runs:
        body += [f"<h2>{html.escape(an.label)}: partners</h2>", _table(an.partners)]
    body.append("<h2>Assumptions</h2>")
    for an in runs:
        body += [f"<h3>{html.escape(an.label)}</h3>", _assumptions(an.assumptions)]
    return _page(title, "".join(body))


def write_compare(runs: Sequence[Analysis], out: str | Path, title: str) -> None:
    """One report and one summary for several runs (each run also has its own folder)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table = {an.label: _clean({k: v for k, v in an.summary.items() if not isinstance(v, list)})
             for an in runs}
    _atomic_write(out / "summary.json",
                  (json.dumps({"runs": table}, indent=2, default=_json_default, allow_nan=False) + "\n").encode())
    _atomic_write(out / "report.html", render_compare(runs, title).encode())
