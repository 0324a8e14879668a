"""The twin's driver on dev-32: exact outcomes of small hand-made scenarios."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

from gigafactory.core.facility import preset
from gigafactory.core.scheduler import InvariantError, SchedulerConfig
from gigafactory.core.shares import TenantKind, TenantSpec
from gigafactory.twin.failures import LLAMA3_NODE_MTBF_H, FailureModel
from gigafactory.twin.simulate import SimConfig, Simulation, SimulationError, parse_cycle, simulate
from gigafactory.twin.synthetic import generate
from gigafactory.twin.workload import Workload, from_frame

DEV = preset("dev-32")


def wl(rows: list[tuple[Any, ...]], **extra: list[Any]) -> Workload:
    """Rows of (job_id, submit, gpus, duration, tenant)."""
    df = pd.DataFrame(rows, columns=["job_id", "submit_time", "gpus", "duration", "tenant"])
    for k, v in extra.items():
        df[k] = v
    df["tenant"] = df["tenant"].astype("string")
    return from_frame(df, name="test-trace")


def run(w: Workload, **cfg: Any) -> Any:
    tree = cfg.pop("tree", None)
    return simulate(DEV, w, SimConfig(**cfg), tree=tree, tree_name="tree.yaml")


def by_id(result: Any) -> pd.DataFrame:
    return result.jobs.set_index("job_id")


def test_fifo_gang_blocks_later_jobs_and_times_are_exact() -> None:
    w = wl([("a", 0, 32, 100, "t1"), ("b", 10, 8, 50, "t2"), ("c", 20, 8, 30, "t1")])
    j = by_id(run(w, policy="fifo"))
    assert j.loc["a", ["first_start", "end"]].tolist() == [0, 100]
    assert j.loc["b", ["first_start", "end"]].tolist() == [100, 150]
    assert j.loc["c", ["first_start", "end"]].tolist() == [100, 130]
    assert (j["status"] == "completed").all()
    np.testing.assert_allclose(j["useful_gpu_s"], j["gpus"] * j["duration"])
    assert j["lost_gpu_s"].sum() == 0


def test_interval_cycles_start_jobs_on_the_tick() -> None:
    w = wl([("a", 5, 8, 100, "t"), ("b", 31, 8, 10, "t")])
    r = run(w, cycle_on_events=False, cycle_interval=30)
    j = by_id(r)
    assert j.loc["a", "first_start"] == 30
    assert j.loc["b", "first_start"] == 60
    assert j.loc["a", "end"] == 130
    both = run(w, cycle_on_events=True, cycle_interval=30)
    assert by_id(both).loc["a", "first_start"] == 5


@pytest.mark.parametrize(("text", "want"), [("events", (True, 0.0)), ("30", (False, 30.0)),
                                             ("events+30s", (True, 30.0))])
def test_parse_cycle(text: str, want: tuple[bool, float]) -> None:
    assert parse_cycle(text) == want


def test_parse_cycle_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="cycle must be 'events'"):
        parse_cycle("often")


def _reclaim_case(**cfg: Any) -> Any:
    tree = [TenantSpec("A", TenantKind.PARTNER, guarantee=16), TenantSpec("B", TenantKind.PARTNER, guarantee=16)]
    rows = [(f"a{i}", 0, 8, 1000, "A") for i in range(4)] + [("b0", 10, 16, 100, "B")]
    w = wl(rows, checkpoint_interval=[100.0] * 4 + [math.nan])
    return run(w, policy="gigafactory", tree=tree, **cfg)


def test_reclaim_preempts_borrowers_who_save_at_sigterm() -> None:
    r = _reclaim_case()
    j = by_id(r)
    assert j.loc["b0", ["first_start", "end"]].tolist() == [70, 170]  # 60 s grace
    victims = j[j["preemptions"] > 0]
    assert len(victims) == 2 and set(victims.index) <= {"a0", "a1", "a2", "a3"}
    assert (victims["end"] == 170 + 990).all()  # 10 s of work saved at SIGTERM
    assert j["lost_gpu_s"].sum() == 0
    assert victims["overhead_gpu_s"].tolist() == [8 * 60, 8 * 60]
    a = r.attempts
    assert (a["reason"] == "preempted").sum() == 2
    np.testing.assert_allclose(j["useful_gpu_s"], j["gpus"] * j["duration"])


def test_without_checkpoint_on_sigterm_the_victims_lose_work() -> None:
    j = by_id(_reclaim_case(preempt_checkpoint=False))
    victims = j[j["preemptions"] > 0]
    assert victims["lost_gpu_s"].tolist() == [80, 80]  # 8 GPUs x 10 s since start
    assert (victims["end"] == 170 + 1000).all()


def test_node_failure_loses_work_since_last_checkpoint_and_requeues() -> None:
    w = wl([("x", 0, 32, 1000, "t"), ("y", 0, 8, 500, "t")], checkpoint_interval=[300.0, math.nan])
    r = run(w, policy="fifo", outages=((0, 450.0, 2000.0),))
    j = by_id(r)
    # x held all 4 nodes; checkpoint at 300, failure at 450: 150 s x 32 GPUs lost.
    assert j.loc["x", "failures"] == 1
    assert j.loc["x", "lost_gpu_s"] == 150 * 32
    # node 0 is down until 2000; x needs every node, so it restarts at 2000 with 700 s left
    assert j.loc["x", ["first_start", "end"]].tolist() == [0, 2700]
    assert j.loc["y", "status"] == "completed" and j.loc["y", "first_start"] >= 450
    assert r.outages[["node", "down", "up"]].values.tolist() == [[0, 450, 2000]]
    att = r.attempts
    held = (att["end"] - att["start"]) * att["gpus"]
    np.testing.assert_allclose(held, att["useful_gpu_s"] + att["lost_gpu_s"] + att["overhead_gpu_s"])


def test_random_failures_follow_the_llama3_rate_and_are_seeded() -> None:
    m = FailureModel()
    assert m.node_mtbf_h == pytest.approx(6334.6, abs=0.1)
    hours_between = 54 * 24 / 419  # one interruption every ~3.1 h on 2,048 nodes
    assert pytest.approx(hours_between) == LLAMA3_NODE_MTBF_H / 2048
    w = generate("synthetic:jobs=60,load=0.8,seed=2,days=2", DEV)
    fast = FailureModel(node_mtbf_h=24.0, repair_h=1.0, seed=3)
    r1 = simulate(DEV, w, SimConfig(failures=fast))
    r2 = simulate(DEV, w, SimConfig(failures=fast))
    pd.testing.assert_frame_equal(r1.jobs, r2.jobs)
    assert len(r1.outages) >= 4  # 4 nodes, MTBF one day, over ~2+ days
    assert (r1.jobs["status"] == "completed").all()
    # failures never change the workload itself
    r0 = simulate(DEV, w, SimConfig())
    assert r0.outages.empty
    np.testing.assert_array_equal(r0.jobs["duration"], r1.jobs["duration"])


def test_start_overhead_delays_work_not_the_hold() -> None:
    r = run(wl([("a", 0, 8, 100, "t")]), start_overhead=20)
    j = by_id(r)
    assert j.loc["a", ["first_start", "end"]].tolist() == [0, 120]
    assert j.loc["a", "overhead_gpu_s"] == 8 * 20


def test_until_stops_the_run_and_reports_unfinished_jobs() -> None:
    r = run(wl([("a", 0, 8, 100, "t"), ("b", 0, 32, 100, "t"), ("c", 500, 8, 10, "t")]),
            policy="fifo", until=150)
    j = by_id(r)
    assert r.end_time == 150
    assert j["status"].tolist() == ["completed", "running", "not-arrived"]
    assert j.loc["b", "useful_gpu_s"] == 32 * 50


def test_stall_is_reported_not_looped() -> None:
    # owner keeps its idle guarantee (lend limit 0): the other tenant's job can never start
    tree = [TenantSpec("owner", TenantKind.PARTNER, guarantee=32, lend_limit=0), TenantSpec("t", TenantKind.PARTNER)]
    r = run(wl([("a", 0, 16, 100, "t")]), tree=tree)
    assert r.stalled is not None and "can never start" in r.stalled
    assert by_id(r).loc["a", "status"] == "pending"


def test_a_gang_above_its_tenants_limit_is_refused_before_the_run() -> None:
    tree = [TenantSpec("t", TenantKind.PARTNER, borrow_limit=8)]
    w = wl([("a", 0, 16, 100, "t"), ("b", 0, 8, 100, "t")])
    with pytest.raises(SimulationError, match=r"job a asks for 16 GPUs, more than project t may ever hold \(8"):
        run(w, tree=tree)
    r = run(w, tree=tree, skip_invalid=True)
    assert r.jobs["job_id"].tolist() == ["b"]
    assert r.workload.skipped == {"gang bigger than its tenant's limit": 1}


def test_same_inputs_same_records() -> None:
    w = generate("synthetic:jobs=80,load=1.2,seed=7,days=1", DEV)
    a, b = simulate(DEV, w), simulate(DEV, w)
    pd.testing.assert_frame_equal(a.jobs, b.jobs)
    pd.testing.assert_frame_equal(a.attempts, b.attempts)
    assert a.events == b.events


@pytest.mark.parametrize("policy", ["fifo", "easy-backfill", "las", "srtf", "gigafactory"])
def test_every_policy_completes_a_synthetic_day_with_validation(policy: str) -> None:
    w = generate("synthetic:jobs=60,load=0.9,seed=1,days=1", DEV)
    r = simulate(DEV, w, SimConfig(policy=policy, cycle_interval=300.0,
                                   failures=FailureModel(node_mtbf_h=48.0)))
    j = r.jobs
    assert (j["status"] == "completed").all()
    assert (j["first_start"] >= j["submit"]).all()
    np.testing.assert_allclose(j["useful_gpu_s"], j["gpus"] * j["duration"], rtol=1e-9)


def test_a_gang_bigger_than_the_facility_is_one_clear_error() -> None:
    w = wl([("ok", 0, 8, 10, "t"), ("huge", 1, 64, 10, "t")])
    with pytest.raises(SimulationError, match=r"test-trace: job huge asks for 64 GPUs, more than facility "
                                              r"dev-32 can ever run \(32 in one gang\); 1 such job"):
        run(w)
    r = run(w, skip_invalid=True)
    assert r.jobs["job_id"].tolist() == ["ok"]
    assert r.workload.skipped == {"gang bigger than the facility": 1}


def test_unknown_tenant_with_a_tree_file_is_one_clear_error() -> None:
    w = wl([("a", 0, 8, 10, "alice"), ("b", 0, 8, 10, "mallory"), ("c", 0, 8, 10, "mallory")])
    with pytest.raises(SimulationError, match=r"unknown tenant 'mallory' \(2 jobs\): not a project of tree.yaml"):
        run(w, tree=[TenantSpec("alice", TenantKind.PARTNER)])


def test_validation_catches_a_drifting_twin() -> None:
    sim = Simulation(DEV, wl([("a", 0, 8, 100, "t"), ("b", 5, 8, 100, "t")]), SimConfig())
    original = sim._start

    def leaky(t: float, s: Any) -> None:
        original(t, s)
        sim.busy += 1  # a twin bug: GPUs counted twice

    sim._start = leaky  # type: ignore[method-assign]
    with pytest.raises(InvariantError, match="busy GPUs"):
        sim.run()


def test_scheduler_config_reaches_the_core() -> None:
    r = _reclaim_case(scheduler=SchedulerConfig(preemption_grace=5.0, explain=False))
    assert by_id(r).loc["b0", "first_start"] == 15
