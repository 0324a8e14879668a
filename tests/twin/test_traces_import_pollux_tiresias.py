"""Importers ``pollux`` (whole workload-6 of the Pollux artifact) and ``tiresias`` (toy CSVs)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from gigafactory.twin.traces import TraceError, import_trace
from gigafactory.twin.traces.pollux import REFERENCE_GPU_SECONDS

FIX = Path(__file__).parents[1] / "fixtures" / "traces"


def test_pollux_workload_duration_model_and_tenant() -> None:
    res = import_trace("pollux", FIX / "pollux_workload-6.csv")
    df = res.df.set_index("job_id")
    assert len(df) == 160 and not res.skipped
    assert set(df["tenant"]) == {"pollux"}
    # imagenet-18,3472,imagenet,24,3200 ; the first job (cifar10-0) arrived at 53 s -> time 0.
    im = df.loc["imagenet-18"]
    assert (im["gpus"], im["submit_time"], im["kind"]) == (24, 3472.0 - 53.0, "imagenet")
    assert im["duration"] == pytest.approx(math.sqrt(10) * 100 * 3600 / 24)
    c0 = df.loc["cifar10-0"]
    assert c0["submit_time"] == 0.0
    assert c0["duration"] == pytest.approx(math.sqrt(60 * 3600) / 6)
    # Linear scaling: every job of an application offers the same GPU-time.
    gpu_time = (df["gpus"] * df["duration"]).groupby(df["kind"]).agg(["min", "max"])
    for app, row in gpu_time.iterrows():
        assert row["min"] == pytest.approx(row["max"]) == pytest.approx(REFERENCE_GPU_SECONDS[app])
    assert any("duration model" in n for n in res.notes)


def test_pollux_unknown_application_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "w.csv"
    path.write_text("name,time,application,num_replicas,batch_size\na-0,0,cifar10,1,128\nb-1,5,gpt5,4,64\n")
    with pytest.raises(TraceError, match=r"w\.csv row 2: application must be one of cifar10, .*, got 'gpt5'"):
        import_trace("pollux", path)
    res = import_trace("pollux", path, skip_invalid=True)
    assert len(res.df) == 1 and sum(res.skipped.values()) == 1


def test_tiresias_60_jobs() -> None:
    res = import_trace("tiresias", FIX / "tiresias_60_job.csv")
    df = res.df.set_index("job_id")
    assert len(df) == 60 and set(df["tenant"]) == {"tiresias"}
    # 1,8,30,133,vgg11,147,23
    j1 = df.loc["1"]
    assert (j1["gpus"], j1["submit_time"], j1["duration"], j1["kind"]) == (8, 30.0, 147.0, "vgg11")
    assert df["recorded_start"].isna().all()


def test_tiresias_tf_job_duplicate_id_and_recorded_times() -> None:
    with pytest.raises(TraceError, match=r"tiresias_tf_job\.csv row 2: job_id must be unique, got '10'"):
        import_trace("tiresias", FIX / "tiresias_tf_job.csv")
    res = import_trace("tiresias", FIX / "tiresias_tf_job.csv", skip_invalid=True)
    assert res.skipped == {"job_id must be unique": 1}
    # 10,12,11,14,20,... : submit 11 -> 0 after rebasing, start 14 -> 3, end 3 + 20.
    row = res.df.iloc[0]
    assert (row["job_id"], row["gpus"], row["submit_time"]) == ("10", 12, 0.0)
    assert (row["recorded_start"], row["recorded_end"], row["duration"]) == (3.0, 23.0, 20.0)


def test_tiresias_user_column_is_the_tenant(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("job_id,num_gpu,submit_time,duration,user\n1,2,0,10,alice\n2,4,5,20,bob\n")
    df = import_trace("tiresias", path).df
    assert df["tenant"].tolist() == ["alice", "bob"]


def test_a_file_of_another_format_is_refused() -> None:
    with pytest.raises(TraceError, match="missing columns job_id, num_gpu, submit_time, duration needed by format tiresias"):
        import_trace("tiresias", FIX / "pollux_workload-6.csv")
