"""Benchmark one full scheduling cycle at gigafactory scale.

Run with no arguments for the headline scenario (gigafactory-100k, 5 partners,
500 projects, 20,000 pending and 8,000 running jobs) plus the scaling series
(1k/10k/100k GPUs; 2k/20k/200k pending). Each scenario runs in its own process so
that its peak RSS is its own. Prints a table and writes bench/results/cycle.json.

Job sizes: 80% ask for 1–8 GPUs, 15% for 16–512 and 5% for 1,024–16,384 (log-uniform
within each band). The running set is drawn from the same mix, in random order,
while it fits in 98% of the facility, then topped up with 1–8 GPU jobs to the
requested count; so the facility is full and big pending gangs must wait.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from gigafactory.core.facility import Facility, FacilitySpec, preset
from gigafactory.core.jobs import JobSpec, Placement, PriorityClass, TopologyWish
from gigafactory.core.placement import place
from gigafactory.core.scheduler import Scheduler
from gigafactory.core.shares import ShareTree, TenantKind, TenantSpec

RESULTS = Path(__file__).parent / "results"


def facility_for(gpus: int) -> Facility:
    if gpus == 100_000:
        return preset("gigafactory-100k")
    nodes = gpus // 8
    spec = {
        "name": f"bench-{gpus}",
        "accelerators": [{"name": "B200", "memory_gb": 192, "bf16_tflops": 2250, "watts": 1000}],
        "sites": [{"name": "s", "pools": [{"accelerator": "B200", "nodes": nodes, "nodes_per_rack": 4, "nodes_per_block": 128}]}],
    }
    return Facility.from_spec(FacilitySpec.model_validate(spec))


def share_tree(capacity: int, partners: int = 5, projects: int = 500) -> ShareTree:
    tenants: list[TenantSpec] = []
    per_partner = projects // partners
    for p in range(partners):
        g = int(capacity * 0.9 / partners)
        tenants.append(TenantSpec(f"partner{p}", TenantKind.PARTNER, guarantee=g, weight=1 + p % 3))
        for k in range(5):
            prog = f"p{p}-prog{k}"
            tenants.append(TenantSpec(prog, TenantKind.PROGRAMME, parent=f"partner{p}", guarantee=g // 5))
            for j in range(per_partner // 5):
                tenants.append(TenantSpec(f"p{p}-{k}-proj{j}", parent=prog, guarantee=g // per_partner))
    return ShareTree(tenants)


def sizes(rng: np.random.Generator, n: int, max_gpus: int) -> np.ndarray:
    band = rng.choice(3, size=n, p=[0.80, 0.15, 0.05])
    lo = np.array([1, 16, 1024])[band]
    hi = np.array([8, 512, 16384])[band]
    s = np.exp(rng.uniform(np.log(lo), np.log(hi + 1)))
    return np.minimum(np.floor(s).astype(np.int64), max_gpus)


def build(gpus: int, pending: int, running: int, seed: int = 0) -> Scheduler:
    rng = np.random.default_rng(seed)
    f = facility_for(gpus)
    tree = share_tree(f.total_gpus)
    projects = tree.projects
    s = Scheduler(f, tree, "gigafactory")
    budget = int(f.total_gpus * 0.98)
    cand = sizes(rng, running * 3, f.total_gpus // 8)
    chosen: list[int] = []
    total = 0
    for g in cand.tolist():
        if len(chosen) >= running:
            break
        if total + g + 4.5 * (running - len(chosen) - 1) <= budget:
            chosen.append(g)
            total += g
    while len(chosen) < running:
        chosen.append(int(rng.integers(1, 9)))
    i = 0
    while len(s.running) < running and i < len(chosen) + 10 * running:
        g = chosen[i] if i < len(chosen) else int(rng.integers(1, 9))
        walltime = float(rng.choice([3600, 4 * 3600, 24 * 3600, 7 * 86400]))
        spec = JobSpec(f"r{i}", projects[i % len(projects)], g, submit_time=-1.0, walltime=walltime,
                       runtime_estimate=walltime * float(rng.uniform(0.2, 1.0)))
        i += 1
        alloc = place(s.state, g, None, TopologyWish.ANY)
        if alloc is not None:
            started = -float(rng.uniform(0, spec.expected_runtime))
            s.restore_running(spec, Placement(tuple(zip(alloc[0].tolist(), alloc[1].tolist(), strict=True))), started)
    for i, g in enumerate(sizes(rng, pending, f.total_gpus // 2).tolist()):
        prio = PriorityClass(int(rng.choice(3, p=[0.2, 0.75, 0.05])))
        wish = TopologyWish.FEWEST_BLOCKS if g > 8 else TopologyWish.ANY
        s.submit(JobSpec(f"q{i}", projects[int(rng.integers(len(projects)))], g,
                         submit_time=float(rng.uniform(-3600, 0)), walltime=24 * 3600.0,
                         runtime_estimate=float(rng.uniform(600, 86400)), priority=prio, topology=wish))
    return s


def measure(gpus: int, pending: int, running: int, cycles: int) -> dict[str, float | int]:
    t0 = time.perf_counter()
    s = build(gpus, pending, running)
    build_s = time.perf_counter() - t0
    times = []
    now = 1.0
    for _ in range(cycles):
        t = time.perf_counter()
        d = s.cycle(now)
        times.append((time.perf_counter() - t) * 1000)
        now += 30.0
    times.sort()
    return {
        "gpus": s.facility.total_gpus,
        "pending": len(s.pending),
        "running": len(s.running),
        "median_ms": round(statistics.median(times), 2),
        "p95_ms": round(times[min(len(times) - 1, int(0.95 * len(times)))], 2),
        "started_last_cycle": d.stats.started,
        "reservations": d.stats.reserved,
        "build_s": round(build_s, 2),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def run_child(gpus: int, pending: int, running: int, cycles: int) -> dict[str, float | int]:
    out = subprocess.run(
        [sys.executable, __file__, "--one", str(gpus), str(pending), str(running), str(cycles)],
        check=True, capture_output=True, text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--one", nargs=4, type=int, metavar=("GPUS", "PENDING", "RUNNING", "CYCLES"),
                    help="run one scenario in this process and print its JSON")
    ap.add_argument("--cycles", type=int, default=20, help="cycles measured per scenario (default 20)")
    ap.add_argument("--quick", action="store_true", help="headline only, no scaling series")
    args = ap.parse_args()
    if args.one:
        print(json.dumps(measure(*args.one)))
        return
    head = run_child(100_000, 20_000, 8_000, args.cycles)
    scaling = []
    if not args.quick:
        for gpus in (1_000, 10_000, 100_000):
            scaling.append({"series": "gpus", **run_child(gpus, 20_000, min(8_000, gpus // 4), args.cycles)})
        for pending in (2_000, 20_000, 200_000):
            few = max(5, args.cycles // 4) if pending > 50_000 else args.cycles  # 200k: 1 s a cycle
            scaling.append({"series": "pending", **run_child(100_000, pending, 8_000, few)})
    result = {**head, "scenario": "gigafactory-100k, 5 partners, 500 projects", "scaling": scaling}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "cycle.json").write_text(json.dumps(result, indent=2) + "\n")
    from rich.console import Console
    from rich.table import Table

    table = Table(title="one full scheduling cycle (gigafactory policy)")
    for col in ("series", "gpus", "pending", "running", "median_ms", "p95_ms", "peak_rss_mib"):
        table.add_column(col, justify="right")
    for row in [{"series": "headline", **head}, *scaling]:
        table.add_row(*(str(row[c]) for c in ("series", "gpus", "pending", "running", "median_ms", "p95_ms", "peak_rss_mib")))
    Console().print(table)
    print(f"wrote {RESULTS / 'cycle.json'}")


if __name__ == "__main__":
    main()
