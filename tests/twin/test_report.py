"""Run outputs: summary.json, jobs.parquet, timeseries.parquet, a self-contained report.html."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from gigafactory.core.facility import preset
from gigafactory.twin.compare import RunSpec, compare, plan_runs
from gigafactory.twin.failures import FailureModel
from gigafactory.twin.report import analyse, write_compare, write_run
from gigafactory.twin.simulate import SimConfig, simulate
from gigafactory.twin.synthetic import generate

DEV = preset("dev-32")
REQUIRED = ("utilisation", "goodput", "wait_p95_s", "jct_mean_s", "guarantee_violation_gpu_hours",
            "lost_gpu_hours", "jobs_completed", "energy_kwh")


@pytest.fixture(scope="module")
def result():
    w = generate("synthetic:jobs=80,load=0.9,seed=4,days=1", DEV)
    return simulate(DEV, w, SimConfig(failures=FailureModel(node_mtbf_h=24.0, seed=1)))


def test_write_run_produces_the_four_outputs(result, tmp_path) -> None:
    write_run(result, tmp_path / "run")
    out = tmp_path / "run"
    assert sorted(p.name for p in out.iterdir()) == ["jobs.parquet", "report.html", "summary.json",
                                                     "timeseries.parquet"]
    s = json.loads((out / "summary.json").read_text())
    for key in REQUIRED:
        assert isinstance(s[key], int | float), key
    assert s["jobs"] == 80 and s["jobs_completed"] == 80
    assert s["assumptions"] and any("MTBF" in a for a in s["assumptions"])
    assert {r["group"] for r in s["by_tenant_class"]} <= {"startup", "sme", "industry", "research",
                                                          "private-partner"}
    assert [p["partner"] for p in s["partners"]] == ["eu", "host", "private"]
    jobs = pd.read_parquet(out / "jobs.parquet")
    assert len(jobs) == 80
    assert {"job_id", "tenant_class", "wait_s", "jct_s", "lost_gpu_s", "preemptions"} <= set(jobs.columns)
    ts = pd.read_parquet(out / "timeseries.parquet")
    assert {"t", "utilisation", "pending_jobs", "held:eu", "guarantee:eu"} <= set(ts.columns)
    assert ts["t"].is_monotonic_increasing


def test_report_is_self_contained_and_lists_assumptions(result, tmp_path) -> None:
    write_run(result, tmp_path)
    page = (tmp_path / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') == 4  # utilisation+queue, CDF, partners, lost work
    assert not re.search(r"(src|href)=[\"']?(https?:|//)", page)
    assert "<script" not in page
    for title in ("Utilisation and queue", "Waiting time", "share against guarantee", "Lost work",
                  "Assumptions"):
        assert title in page
    for a in result.assumptions:
        assert a.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("'", "&#x27;") \
            .replace('"', "&quot;") in page
    assert "bound" in page


def test_analysis_has_cdf_per_class_and_lost_curve(result) -> None:
    an = analyse(result, "x")
    assert "all" in an.wait_cdf
    for qs in an.wait_cdf.values():
        assert (qs[1:] >= qs[:-1]).all()
    assert an.lost["t"].is_monotonic_increasing
    total = an.lost["preemption"].iloc[-1] + an.lost["failures"].iloc[-1]
    assert total == pytest.approx(an.summary["lost_gpu_hours"])


def test_compare_report_has_one_column_per_run(result, tmp_path) -> None:
    a, b = analyse(result, "first"), analyse(result, "second")
    write_compare([a, b], tmp_path, "cmp")
    page = (tmp_path / "report.html").read_text()
    assert "first" in page and "second" in page
    s = json.loads((tmp_path / "summary.json").read_text())
    assert list(s["runs"]) == ["first", "second"]


def test_plan_runs_labels_by_what_varies() -> None:
    assert [r.label for r in plan_runs(["dev-32"], ["fifo", "las"])] == ["fifo", "las"]
    assert [r.label for r in plan_runs(["dev-32", "x/site.yaml"], ["fifo"])] == ["dev-32", "site"]
    assert plan_runs(["a", "b"], ["fifo", "las"])[1] == RunSpec("las@a", "a", "las")
    with pytest.raises(ValueError, match="share a label"):
        plan_runs(["dev-32", "dev-32"], ["fifo"])


def test_compare_runs_policies_in_parallel_processes(tmp_path) -> None:
    w = generate("synthetic:jobs=40,load=0.8,seed=2,days=1", DEV)
    runs = plan_runs(["dev-32"], ["fifo", "gigafactory"])
    done: list[str] = []
    out = compare(runs, w, SimConfig(validate=False), tmp_path, workers=2, on_done=lambda s: done.append(s.label))
    assert [a.label for a in out] == ["fifo", "gigafactory"]
    assert sorted(done) == ["fifo", "gigafactory"]
    for label in ("fifo", "gigafactory"):
        assert (tmp_path / label / "summary.json").exists()
    serial = simulate(DEV, w, SimConfig(policy="fifo", validate=False))
    assert out[0].summary["jct_mean_s"] == pytest.approx(analyse(serial).summary["jct_mean_s"])
    assert (tmp_path / "report.html").exists()
