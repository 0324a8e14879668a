"""Compare the twin's speed and decisions between another revision and this tree.

Figures on the shared 2-core box move by ±20 % with load and by up to ×1.5 from one
machine to another, so two builds only compare when run back to back on one box. This
script checks the other revision out into a temporary git worktree, then alternates
runs of ``bench/twin.py`` (each in its own process, with that tree's ``src`` first on
the path) between it and this tree, and prints the minimum and median wall time of
each side. With ``--decisions`` it also hashes every cycle's starts and preemptions on
both sides and says whether they are identical (a speed-up must not change them).

    .venv/bin/python bench/ab.py --base dc6f6f9                      # Philly, default policy, 5 rounds
    .venv/bin/python bench/ab.py --base HEAD~3 --policy fifo --rounds 3 --decisions

Writes ``bench/results/ab-<scenario>-<policy>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"

# Run in a child process: time one simulation, or hash its decisions cycle by cycle.
_CHILD = r"""
import hashlib, json, sys
root, scenario, policy, decisions = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
sys.path[:0] = [root + "/src", root + "/bench"]
import gigafactory
if not gigafactory.__file__.startswith(root):
    sys.exit(f"error: imported gigafactory from {gigafactory.__file__}, not from {root}")
import twin
from gigafactory.core.scheduler import Scheduler
h, cycles = hashlib.sha256(), [0]
if decisions:
    cycle = Scheduler.cycle
    def hashed(self, now):
        d = cycle(self, now)
        h.update(repr((now, [(s.job_id, s.placement) for s in d.starts],
                       [p.job_id for p in d.preemptions])).encode())
        cycles[0] += 1
        return d
    Scheduler.cycle = hashed
out = twin.run(scenario, policy, None, None)
print(json.dumps({"wall_s": out["wall_s"], "cycles": out["cycles_run"],
                  "decisions": h.hexdigest() if decisions else None}))
"""


def run_one(root: Path, scenario: str, policy: str, decisions: bool) -> dict[str, object]:
    env = {**os.environ, "GIGAFACTORY_TRACES": str(traces())}
    done = subprocess.run([sys.executable, "-c", _CHILD, str(root), scenario, policy, "1" if decisions else "0"],
                          capture_output=True, text=True, env=env)
    if done.returncode != 0:
        sys.exit(f"error: the run in {root} failed:\n{done.stderr.strip()[-2000:]}")
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def traces() -> Path:
    env = os.environ.get("GIGAFACTORY_TRACES")
    for cand in ([Path(env)] if env else []) + [HERE / "shared" / "traces", HERE.parent / "shared" / "traces"]:
        if cand.is_dir():
            return cand
    sys.exit("error: cannot find the shared traces; set GIGAFACTORY_TRACES")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True, help="the revision to compare with (a commit, tag or branch)")
    ap.add_argument("--scenario", default="philly", help="a bench/twin.py scenario (default: philly)")
    ap.add_argument("--policy", default="gigafactory")
    ap.add_argument("--rounds", type=int, default=5, help="alternating runs per side (default: 5)")
    ap.add_argument("--decisions", action="store_true", help="also compare every cycle's starts and preemptions")
    args = ap.parse_args()
    if args.rounds < 1:
        sys.exit("error: --rounds must be at least 1")
    rev = subprocess.run(["git", "-C", str(HERE), "rev-parse", "--verify", "--quiet", f"{args.base}^{{commit}}"],
                         capture_output=True, text=True)
    if rev.returncode != 0:
        sys.exit(f"error: {args.base!r} is not a revision of this repository")
    base = rev.stdout.strip()
    with tempfile.TemporaryDirectory(prefix="gigafactory-ab-") as tmp:
        tree = Path(tmp) / "base"
        subprocess.run(["git", "-C", str(HERE), "worktree", "add", "--detach", "--quiet", str(tree), base], check=True)
        try:
            sides = {"base": tree, "this tree": HERE}
            walls: dict[str, list[float]] = {k: [] for k in sides}
            hashes: dict[str, object] = {}
            if args.decisions:  # one untimed run per side: hashing every cycle costs time
                for name, root in sides.items():
                    hashes[name] = run_one(root, args.scenario, args.policy, True)["decisions"]
                    print(f"decisions of {name}: {hashes[name]}", file=sys.stderr)
            for i in range(args.rounds):
                for name, root in sides.items():
                    got = run_one(root, args.scenario, args.policy, False)
                    walls[name].append(float(got["wall_s"]))  # type: ignore[arg-type]
                    print(f"round {i + 1}/{args.rounds} {name}: {got['wall_s']} s", file=sys.stderr)
        finally:
            subprocess.run(["git", "-C", str(HERE), "worktree", "remove", "--force", str(tree)], check=False)
    table = {name: {"min_s": min(w), "median_s": statistics.median(w), "runs": w} for name, w in walls.items()}
    print(f"{'side':10} {'min s':>8} {'median s':>9}  runs")
    for name, row in table.items():
        print(f"{name:10} {row['min_s']:8.3f} {row['median_s']:9.3f}  {row['runs']}")
    ratio = table["this tree"]["median_s"] / table["base"]["median_s"]  # type: ignore[operator]
    print(f"this tree / base (median): {ratio:.3f}")
    same = None
    if args.decisions:
        same = hashes["base"] == hashes["this tree"]
        print("decisions (starts and preemptions of every cycle): " + ("identical" if same else "DIFFERENT"))
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"ab-{args.scenario}-{args.policy}.json"
    path.write_text(json.dumps({"base": base, "scenario": args.scenario, "policy": args.policy,
                                "rounds": args.rounds, "sides": table, "median_ratio": round(ratio, 3),
                                "decisions_identical": same}, indent=2) + "\n")
    print(f"wrote {path}", file=sys.stderr)
    if same is False:
        sys.exit(1)


if __name__ == "__main__":
    main()
