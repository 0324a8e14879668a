"""The synthetic gigafactory workload: spec parsing, calibration, load, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from gigafactory.core.facility import preset
from gigafactory.core.shares import ShareTree
from gigafactory.twin.synthetic import (
    CLASSES,
    PRETRAIN,
    SyntheticSpec,
    arrival_times,
    describe,
    generate,
    parse_spec,
)
from gigafactory.twin.workload import WorkloadError


@pytest.fixture(scope="module")
def big():
    return preset("gigafactory-100k")


def test_spec_parsing_and_defaults() -> None:
    s = parse_spec("synthetic:jobs=1e5,load=0.8,seed=3,days=2,estimates=none")
    assert (s.jobs, s.load, s.seed, s.days, s.estimates) == (100_000, 0.8, 3, 2.0, "none")
    assert parse_spec("synthetic") == SyntheticSpec()
    assert parse_spec(s.text) == s


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("synthetic:jobs=abc", "jobs must be a whole number, got 'abc'"),
        ("synthetic:jobs=1.5", "jobs must be a whole number, got '1.5'"),
        ("synthetic:color=red", "unknown key 'color'; expected one of jobs, load, seed"),
        ("synthetic:jobs", "expected key=value, got 'jobs'"),
        ("synthetic:load=-1", "load must be positive, got -1.0"),
        ("synthetic:diurnal=1", r"diurnal must be in \[0, 1\), got 1.0"),
        ("synthetic:estimates=magic", "estimates must be one of exact, none, got 'magic'"),
        ("synth:jobs=1", "not a synthetic workload spec"),
    ],
)
def test_bad_specs_give_one_clear_line(text: str, message: str) -> None:
    with pytest.raises(WorkloadError, match=message) as info:
        parse_spec(text)
    assert "\n" not in str(info.value)


def test_same_seed_same_jobs_other_seed_other_jobs(big) -> None:
    a = generate("synthetic:jobs=2000,seed=5,days=1", big)
    b = generate("synthetic:jobs=2000,seed=5,days=1", big)
    c = generate("synthetic:jobs=2000,seed=6,days=1", big)
    for col in ("submit", "gpus", "duration", "project", "kind"):
        np.testing.assert_array_equal(getattr(a, col), getattr(b, col))
    assert not np.array_equal(a.duration, c.duration)


@pytest.mark.parametrize("load", [0.3, 0.9, 1.5])
def test_offered_load_is_met_exactly(big, load: float) -> None:
    w = generate(f"synthetic:jobs=5000,load={load},seed=1,days=2", big)
    assert w.offered_load(big.total_gpus) == pytest.approx(load, rel=1e-9)
    assert len(w) == 5000
    assert np.all(np.diff(w.submit) >= 0)
    assert w.submit.min() >= 0 and w.submit.max() <= 2 * 86400


def test_calibrated_to_llm_cluster_characterisations(big) -> None:
    d = describe(generate("synthetic:jobs=200000,load=0.9,seed=2,days=7", big))
    # Seren/Kalos: median run 122/124 s, median 1 GPU; 3.7-26.8 GPUs per job on average.
    assert 90 <= d["median_runtime_s"] <= 160
    assert d["median_gpus"] == 1
    assert 3 <= d["avg_gpus"] <= 27
    # Most jobs are evals; pretraining holds most of the GPU-time.
    assert d["share_jobs_eval"] > 0.9
    assert d["share_gpu_time_pretrain"] > 0.5
    assert d["max_gpus"] <= 16384


def test_kinds_have_their_documented_shapes(big) -> None:
    w = generate("synthetic:jobs=50000,seed=4,days=7", big)
    ev, ft, pt = (w.kind == k for k in range(3))
    assert set(np.unique(w.gpus[ev])) <= {1, 2, 4, 8}
    assert set(np.unique(w.gpus[ft])) <= {8, 16, 32, 64, 128, 256}
    assert w.gpus[pt].min() >= 1024
    assert w.duration[ev].max() <= 4 * 3600
    assert np.isnan(w.checkpoint_interval[ev]).all()
    assert (w.checkpoint_interval[ft] == 1800).all()
    assert (w.checkpoint_interval[pt] == 3600).all()


def test_arrivals_follow_the_daily_cycle() -> None:
    t = arrival_times(np.random.default_rng(0), 100_000, days=4, diurnal=0.5)
    hour = (t % 86400) // 3600
    peak = np.sum((hour >= 12) & (hour < 16))
    trough = np.sum(hour < 4)
    # intensity 1 ± 0.5: about 3x as many arrivals around 14:00 as around 02:00
    assert 2.5 < peak / trough < 3.5
    flat = arrival_times(np.random.default_rng(0), 100_000, days=4, diurnal=0.0)
    fh = (flat % 86400) // 3600
    assert 0.9 < np.sum((fh >= 12) & (fh < 16)) / np.sum(fh < 4) < 1.1


def test_small_facility_clips_gangs_and_tree_is_valid() -> None:
    dev = preset("dev-32")
    w = generate("synthetic:jobs=100,load=0.9,seed=1,days=1", dev)
    assert w.gpus.max() <= 32
    assert (w.kind == PRETRAIN).sum() >= 1
    assert w.offered_load(32) == pytest.approx(0.9)
    tree = ShareTree(w.tree or [])
    assert set(w.projects) <= set(tree.projects)
    assert sum(tree.spec(p).guarantee for p in tree.partners) == 32
    classes = {tree.spec(p).tenant_class for p in tree.names[1:] if tree.spec(p).tenant_class}
    assert classes == set(CLASSES)
    spec = w.job_spec(0)
    assert spec.project in tree.projects
    assert spec.oracle_runtime == w.duration[0]
    assert spec.walltime >= 2 * w.duration[0]


def test_million_jobs_generate_vectorised(big) -> None:
    w = generate("synthetic:jobs=1000000,load=0.9,seed=1,days=7", big)
    assert len(w) == 1_000_000
    assert w.offered_load(big.total_gpus) == pytest.approx(0.9)
