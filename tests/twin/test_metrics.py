"""Metrics from run records: hand-computed values on tiny scenarios."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from gigafactory.core.facility import preset
from gigafactory.core.scheduler import SchedulerConfig
from gigafactory.core.shares import TenantKind, TenantSpec
from gigafactory.twin.failures import FailureModel
from gigafactory.twin.metrics import (
    finish_time_fairness,
    group_stats,
    guarantee_violations,
    jain,
    size_band,
    steps_at,
    summarise,
    timeseries,
)
from gigafactory.twin.simulate import SimConfig, simulate
from gigafactory.twin.synthetic import generate
from gigafactory.twin.workload import from_frame

DEV = preset("dev-32")


def _wl(rows, **extra):
    df = pd.DataFrame(rows, columns=["job_id", "submit_time", "gpus", "duration", "tenant"])
    for k, v in extra.items():
        df[k] = v
    return from_frame(df, name="t")


@pytest.fixture(scope="module")
def fifo_run():
    w = _wl([("a", 0, 32, 100, "t1"), ("b", 10, 8, 50, "t2"), ("c", 20, 8, 30, "t1")])
    return simulate(DEV, w, SimConfig(policy="fifo"))


def test_summary_of_a_fifo_run_is_exact(fifo_run) -> None:
    s = summarise(fifo_run)
    assert s["jobs"] == s["jobs_completed"] == 3
    assert s["wait_p50_s"] == 80 and s["wait_mean_s"] == pytest.approx(170 / 3)
    assert s["jct_mean_s"] == pytest.approx(350 / 3)
    assert s["jct_bound_mean_s"] == pytest.approx(60)
    assert s["jct_over_bound"] == pytest.approx(350 / 180)
    assert s["bounded_slowdown_mean"] == pytest.approx((1 + 140 / 50 + 110 / 30) / 3)
    assert s["utilisation"] == 1.0  # the arrival window [0, 20] is fully busy
    assert s["utilisation_makespan"] == pytest.approx(3840 / 4800)
    assert s["goodput_makespan"] == pytest.approx(3840 / 4800)
    assert s["lost_gpu_hours"] == 0 and s["preemptions"] == 0
    # 3,840 busy GPU-s at 700 W, 960 idle GPU-s at 20 % of that, PUE 1.2
    assert s["energy_kwh"] == pytest.approx((3840 * 700 + 960 * 140) * 1.2 / 3.6e6)
    assert s["cost_eur"] == pytest.approx(3840 / 3600 * 2.0)
    assert s["makespan_s"] == 150
    for key in ("utilisation", "goodput", "wait_p95_s", "jct_mean_s", "guarantee_violation_gpu_hours",
                "lost_gpu_hours", "jobs_completed", "energy_kwh"):
        assert key in s


def test_groups_by_size_band_and_tenant_class(fifo_run) -> None:
    j = fifo_run.jobs
    bands = group_stats(j, size_band(j["gpus"].to_numpy()))
    assert bands["group"].tolist() == ["2-8", "9-64"]
    assert bands.set_index("group").loc["2-8", "wait_mean_s"] == 85
    classes = group_stats(j, "tenant_class")
    assert classes["group"].tolist() == ["unclassified"]
    assert list(size_band(np.array([1, 2, 8, 9, 512, 513, 4096, 4097, 100000]))) == [
        "1", "2-8", "2-8", "9-64", "65-512", "513-4096", "513-4096", "4097+", "4097+"]


def test_finish_time_fairness_uses_each_projects_static_share(fifo_run) -> None:
    rho = finish_time_fairness(fifo_run).set_index("project")["rho"]
    # each tenant owns half of 32 GPUs: a alone takes 200 s, b 50 s, c 30 s
    assert rho["t1"] == pytest.approx((100 / 200 + 110 / 30) / 2)
    assert rho["t2"] == pytest.approx(140 / 50)


def _reclaim(deadline: float):
    tree = [TenantSpec("A", TenantKind.PARTNER, guarantee=16), TenantSpec("B", TenantKind.PARTNER, guarantee=16)]
    rows = [(f"a{i}", 0, 8, 1000, "A") for i in range(4)] + [("b0", 10, 16, 100, "B")]
    w = _wl(rows, checkpoint_interval=[100.0] * 4 + [math.nan])
    cfg = SimConfig(scheduler=SchedulerConfig(reclaim_deadline=deadline))
    return simulate(DEV, w, cfg, tree=tree)


def test_guarantee_violation_counts_only_beyond_the_reclaim_deadline() -> None:
    # B is owed 16 GPUs from t=10 and gets them at t=70 (60 s preemption grace)
    gv = guarantee_violations(_reclaim(600.0)).set_index("partner")
    assert gv.loc["B", "deficit_gpu_hours"] == pytest.approx(16 * 60 / 3600)
    assert gv.loc["B", "violation_gpu_hours"] == 0
    assert gv.loc["A", "deficit_gpu_hours"] == 0
    gv = guarantee_violations(_reclaim(30.0)).set_index("partner")
    assert gv.loc["B", "violation_gpu_hours"] == pytest.approx(16 * 30 / 3600)
    s = summarise(_reclaim(30.0))
    assert s["guarantee_violation_gpu_hours"] == pytest.approx(16 * 30 / 3600)
    assert s["preemptions"] == 2 and s["overhead_gpu_hours"] == pytest.approx(2 * 8 * 60 / 3600)


def test_timeseries_steps_are_exact() -> None:
    v = steps_at(np.array([1.0, 2.0, 2.0, 5.0]), np.array([4.0, 1.0, -4.0, 3.0]), np.array([0.0, 1.0, 3.0, 6.0]))
    assert v.tolist() == [0.0, 4.0, 1.0, 4.0]
    r = _reclaim(600.0)
    ts = timeseries(r, points=1161)  # one point per second over [0, 1160]
    at = ts.set_index("t")
    assert at.loc[5.0, "busy_gpus"] == 32 and at.loc[5.0, "pending_jobs"] == 0
    assert at.loc[40.0, "pending_jobs"] == 1 and at.loc[40.0, "demand:B"] == 16
    assert at.loc[100.0, "held:B"] == 16 and at.loc[100.0, "pending_jobs"] == 2
    assert at.loc[40.0, "entitled:B"] == 16 and at.loc[40.0, "entitled:A"] == 16
    assert (ts["guarantee:A"] == 16).all()


def test_lost_work_and_failures_in_the_summary() -> None:
    w = _wl([("x", 0, 32, 1000, "t")], checkpoint_interval=[300.0])
    r = simulate(DEV, w, SimConfig(policy="fifo", outages=((0, 450.0, 600.0),)))
    s = summarise(r)
    assert s["lost_gpu_hours"] == pytest.approx(150 * 32 / 3600)
    assert s["lost_gpu_hours_failures"] == s["lost_gpu_hours"]
    assert s["node_failures"] == 1 and s["job_interruptions"] == 1
    assert s["goodput_makespan"] < s["utilisation_makespan"]
    assert s["lost_cost_eur"] == pytest.approx(150 * 32 / 3600 * 2.0)


def test_jain_index() -> None:
    assert jain(np.array([1.0, 1.0, 1.0])) == 1.0
    assert jain(np.array([1.0, 0.0, 0.0, 0.0])) == 0.25
    assert math.isnan(jain(np.array([np.nan])))


def test_synthetic_run_metrics_are_within_their_bounds() -> None:
    w = generate("synthetic:jobs=150,load=0.7,seed=3,days=1", DEV)
    r = simulate(DEV, w, SimConfig(failures=FailureModel(node_mtbf_h=48.0)))
    s = summarise(r)
    assert 0 < s["goodput"] <= s["utilisation"] <= 1
    assert s["utilisation_bound"] == pytest.approx(0.7)
    assert s["jct_over_bound"] >= 1
    assert 0 < s["jain_fairness_projects"] <= 1 and 0 < s["jain_fairness_partners"] <= 1
    assert s["wait_p50_s"] <= s["wait_p95_s"] <= s["wait_p99_s"]
    assert s["useful_gpu_hours"] == pytest.approx(float((w.gpus * w.duration).sum()) / 3600)


def test_ks_distance() -> None:
    from gigafactory.twin.metrics import ks_distance

    assert ks_distance(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.0])) == 0
    assert ks_distance(np.zeros(4), np.ones(4)) == 1
    # ECDFs of {0, 0, 5, 9} and {0, 5, 5, 5}: the gap is largest at 0 (0.5 vs 0.25) and 5 (0.75 vs 1)
    assert ks_distance(np.array([0.0, 0, 5, 9]), np.array([0.0, 5, 5, 5])) == 0.25
    assert math.isnan(ks_distance(np.array([]), np.array([1.0])))
