"""Validation against reality: replay the Alibaba GPU v2023 trace on its own node list.

The trace records when each pod was created and when it was really scheduled, so
the twin's waiting times can be compared with the recorded ones
(``scheduled_time − creation_time``). This module sets the run up like the
original cluster and writes the comparison (KS distance and both CDFs) into the
run's report; ``docs/twin-validation.md`` explains what differs and why.

Set-up:

- facility: ``nodes:openb_node_list_gpu_node.csv`` (1,213 GPU nodes, 6,212 GPUs; one
  pool per model and node size, see :func:`gigafactory.facility_files.node_list_spec`);
- workload: the ``alibaba-v2023`` importer on ``openb_pod_list_default.csv``
  (CPU-only and never-scheduled pods are left out and counted; fractional GPUs are
  rounded up to one whole GPU);
- policy ``kube-default``: the cluster ran the Kubernetes scheduler, which takes
  pods in creation order and places each one that fits, skipping (not waiting
  behind) pods that do not fit, with no reservations and no preemption by
  fair share. That is the core's FIFO order with ``strict``, ``reserve``,
  ``backfill`` and ``reclaim`` off: a configuration of the core's
  :class:`~gigafactory.core.policies.Policy`, not new policy logic;
- no random failures (recorded durations already include what happened), cycle on
  events (the Kubernetes scheduler reacts to every pod and node event).

Run: ``python -m gigafactory.twin.validate --traces ../shared/traces --out runs/validation``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from gigafactory.core.policies import POLICIES, Policy

KUBE_DEFAULT: Policy = POLICIES["kube-default"]

#: Policies the twin offers on top of the core's registry (none now: kube-default
#: moved into the core's one list).
TWIN_POLICIES: dict[str, Policy] = {}

NODE_LIST = "alibaba-gpu-v2023/csv/openb_node_list_gpu_node.csv"
POD_LIST = "alibaba-gpu-v2023/csv/openb_pod_list_default.csv"


def policy_names() -> list[str]:
    return [*POLICIES, *TWIN_POLICIES]


def resolve_policy(name: str) -> str | Policy:
    """A core policy name, or a twin configuration of the core's policy."""
    return TWIN_POLICIES.get(name, name)


def run_alibaba(traces: Path, out: Path, cycle: str = "events", policy: str = "kube-default") -> dict[str, Any]:
    """Replay the Alibaba trace on its node list; write the run and return the validation figures."""
    from gigafactory.facility_files import load_facility
    from gigafactory.twin.inputs import resolve_workload
    from gigafactory.twin.report import write_run
    from gigafactory.twin.simulate import SimConfig, parse_cycle, simulate

    facility = load_facility(f"nodes:{traces / NODE_LIST}")
    workload = resolve_workload(f"alibaba-v2023:{traces / POD_LIST}", facility)
    on_events, interval = parse_cycle(cycle)
    cfg = SimConfig(policy=policy, cycle_on_events=on_events, cycle_interval=interval, validate=False)
    result = simulate(facility, workload, cfg)
    an = write_run(result, out, label=f"{policy} on the Alibaba v2023 node list")
    return {"cycle": cfg.cycle_text, "policy": policy, "jobs": len(workload),
            "gpus": facility.total_gpus, "utilisation": an.summary["utilisation"],
            **an.summary["validation"]}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Validate the twin against the Alibaba GPU v2023 trace.")
    ap.add_argument("--traces", type=Path, required=True, help="the shared traces folder")
    ap.add_argument("--out", type=Path, default=Path("runs/validation"))
    ap.add_argument("--cycle", default="events")
    ap.add_argument("--policy", default="kube-default", choices=policy_names())
    args = ap.parse_args(argv)
    try:
        res = run_alibaba(args.traces, args.out, args.cycle, args.policy)
    except ValueError as exc:  # user errors are one line
        sys.exit(f"error: {exc}")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
