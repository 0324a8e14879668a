"""Benchmark the digital twin end to end (not a timed test).

Scenarios (``--scenario``):

- ``philly``: the Gavel/Philly seed-0 traces (15 virtual clusters, 15,264 jobs,
  imported on the fly from ``gavel-philly-derived/msr/seed=0``) on a 500-GPU V100
  cluster (125 nodes x 4), cycle on events, no random failures (recorded durations
  already include the trace's own failures);
- ``synthetic-10k`` / ``synthetic-100k`` / ``synthetic-1m``: the synthetic gigafactory
  workload at 90 % offered load on ``gigafactory-100k``, 10k/100k/1M jobs at the
  same arrival rate (1M jobs per 7 days), cycle every 30 simulated seconds,
  Llama 3-calibrated node failures, default policy;
- ``scaling``: the three synthetic sizes, each in its own process (so peak RSS is
  its own), to show how wall time grows with jobs.

Each run writes ``bench/results/twin-<scenario>.json`` (``twin-<scenario>-<policy>.json``
for a policy other than the default) with at least ``jobs``,
``gpus``, ``wall_s`` (the simulation's event loop), ``events_per_s`` and
``peak_rss_mib`` at the top level, plus the time to build the workload, the time to
compute the metrics, and the run's headline figures.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from gigafactory.core.facility import Facility, FacilitySpec, preset
from gigafactory.core.scheduler import SchedulerConfig
from gigafactory.twin.failures import FailureModel
from gigafactory.twin.inputs import resolve_workload
from gigafactory.twin.metrics import summarise, timeseries
from gigafactory.twin.simulate import SimConfig, parse_cycle, simulate

RESULTS = Path(__file__).parent / "results"
SIZES = {"synthetic-10k": 10_000, "synthetic-100k": 100_000, "synthetic-1m": 1_000_000}

#: The 500-GPU cluster of Gavel's Philly simulations (cluster_specs.json: 500 V100).
PHILLY_500 = {
    "name": "philly-500",
    "pue": 1.3,
    "cost_per_gpu_hour": 1.5,
    "accelerators": [{"name": "V100", "memory_gb": 32, "bf16_tflops": 125, "watts": 300}],
    "sites": [{"name": "philly", "pools": [
        {"accelerator": "V100", "nodes": 125, "gpus_per_node": 4, "nodes_per_rack": 4, "nodes_per_block": 32}
    ]}],
}


def traces_dir() -> Path:
    env = os.environ.get("GIGAFACTORY_TRACES")
    here = Path(__file__).resolve().parents[1]
    for cand in ([Path(env)] if env else []) + [here / "shared" / "traces", here.parent / "shared" / "traces"]:
        if cand.is_dir():
            return cand
    sys.exit("error: cannot find the shared traces; set GIGAFACTORY_TRACES")


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run(scenario: str, policy: str, cycle: str | None, out: Path | None) -> dict[str, Any]:
    t0 = time.perf_counter()
    facility: Facility
    if scenario == "philly":
        facility = Facility.from_spec(FacilitySpec.model_validate(PHILLY_500))
        text = f"gavel:{traces_dir() / 'gavel-philly-derived' / 'msr' / 'seed=0'}"
        cycle = cycle or "events"
        failures = None
    else:
        n = SIZES[scenario]
        facility = preset("gigafactory-100k")
        text = f"synthetic:jobs={n},load=0.9,seed=1,days={7 * n / 1_000_000:g}"
        cycle = cycle or "30"
        failures = FailureModel()
    workload = resolve_workload(text, facility)
    build_s = time.perf_counter() - t0
    on_events, interval = parse_cycle(cycle)
    cfg = SimConfig(policy=policy, scheduler=SchedulerConfig(explain=False), cycle_on_events=on_events,
                    cycle_interval=interval, failures=failures, validate=False)
    result = simulate(facility, workload, cfg)
    t1 = time.perf_counter()
    if out is not None:
        from gigafactory.twin.report import write_run

        summary = write_run(result, out / scenario).summary
    else:
        summary = summarise(result, timeseries(result))
    metrics_s = time.perf_counter() - t1
    events = int(sum(result.events.values()))
    keep = ("utilisation", "utilisation_bound", "goodput", "jobs_completed", "wait_p50_s", "wait_p95_s",
            "jct_mean_s", "jct_bound_mean_s", "guarantee_violation_gpu_hours", "preemptions",
            "lost_gpu_hours", "node_failures", "energy_kwh", "makespan_s")
    return {
        "scenario": scenario,
        "jobs": len(workload),
        "gpus": facility.total_gpus,
        "wall_s": round(result.wall_s, 3),
        "events": events,
        "events_per_s": round(events / result.wall_s, 1),
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "build_workload_s": round(build_s, 3),
        "metrics_s": round(metrics_s, 3),
        "policy": policy,
        "cycle": cfg.cycle_text,
        "failures": failures.describe() if failures else "none",
        "facility": facility.name,
        "workload": text if scenario != "philly" else "gavel:gavel-philly-derived/msr/seed=0",
        "cycles_run": result.cycles,
        "events_by_kind": result.events,
        "simulated_days": round(result.end_time / 86400.0, 2),
        "summary": {k: (None if isinstance(summary.get(k), float) and not math.isfinite(summary[k])
                        else summary.get(k)) for k in keep},
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
    }


def write(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"twin-{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)
    return path


def scaling(policy: str, cycle: str | None) -> dict[str, Any]:
    points = []
    for name in SIZES:
        cmd = [sys.executable, __file__, "--scenario", name, "--policy", policy, "--print-only"]
        if cycle:
            cmd += ["--cycle", cycle]
        done = subprocess.run(cmd, check=True, capture_output=True, text=True)
        points.append(json.loads(done.stdout))
        p = points[-1]
        print(f"{name}: {p['jobs']:,} jobs, {p['wall_s']:.1f} s, {p['events_per_s']:,.0f} events/s, "
              f"{p['peak_rss_mib']:.0f} MiB", file=sys.stderr)
    base = points[0]
    for p in points:
        p["wall_per_job_us"] = round(p["wall_s"] / p["jobs"] * 1e6, 2)
        p["wall_ratio_vs_10k"] = round(p["wall_s"] / base["wall_s"], 2)
    big = points[-1]
    return {
        "scenario": "scaling", "jobs": big["jobs"], "gpus": big["gpus"], "wall_s": big["wall_s"],
        "events_per_s": big["events_per_s"], "peak_rss_mib": max(p["peak_rss_mib"] for p in points),
        "points": points,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", default="synthetic-1m", choices=["philly", "scaling", *SIZES])
    ap.add_argument("--policy", default="gigafactory")
    ap.add_argument("--cycle", default=None, help="events | N seconds | events+N (default per scenario)")
    ap.add_argument("--out", type=Path, default=None, help="also write the run's report here")
    ap.add_argument("--print-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.scenario == "scaling":
        data = scaling(args.policy, args.cycle)
    else:
        data = run(args.scenario, args.policy, args.cycle, args.out)
    if args.print_only:
        print(json.dumps(data))
        return
    name = args.scenario if args.policy == "gigafactory" else f"{args.scenario}-{args.policy}"
    path = write(name, data)
    print(json.dumps({k: data[k] for k in ("jobs", "gpus", "wall_s", "events_per_s", "peak_rss_mib")}))
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
