"""Importers ``helios`` and ``acme`` (raw and converted layouts)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from gigafactory.twin.traces import TraceError, import_trace

FIX = Path(__file__).parents[1] / "fixtures" / "traces"


def test_helios_vc_tenants_and_cpu_jobs_counted() -> None:
    res = import_trace("helios", FIX / "helios_cluster_log.csv")
    df = res.df.set_index("job_id")
    assert res.skipped == {"CPU job (gpu_num = 0)": 2}
    assert sorted(df.index) == ["h1", "h3", "h4", "h6", "h7", "h8"]
    assert df["tenant"].value_counts().to_dict() == {"vc6YE": 3, "vcKrW": 2, "vcEwI": 1}
    # Date strings become seconds from the earliest submit (h1 at 00:00:10).
    assert df.loc["h1", "submit_time"] == 0.0
    assert df.loc["h7", "submit_time"] == 86400.0 - 10.0
    assert (df.loc["h4", "gpus"], df.loc["h4", "duration"], df.loc["h4", "status"]) == (16, 7200.0, "cancelled")
    assert df["recorded_start"].isna().all()


def test_helios_zero_duration_is_invalid_and_epoch_times_work(tmp_path: Path) -> None:
    path = tmp_path / "helios.csv"
    path.write_text(
        "job_id,user,vc,jobname,gpu_num,cpu_num,state,submit_time,duration\n"
        "a,u,vc1,x,1,1,COMPLETED,1585699200,10\n"
        "b,u,vc1,x,2,1,FAILED,1585699260,0\n"
        "c,u,vc2,x,0,1,COMPLETED,1585699300,0\n"
    )
    with pytest.raises(TraceError, match=r"helios\.csv row 2: duration must be > 0, got 0"):
        import_trace("helios", path)
    res = import_trace("helios", path, skip_invalid=True)
    assert res.skipped == {"CPU job (gpu_num = 0)": 1, "duration must be > 0": 1}
    assert res.df["job_id"].tolist() == ["a"]
    assert any("2020-04-01 00:00:00 UTC" in n for n in res.notes)


def test_acme_raw_user_tenants_types_and_recorded_times() -> None:
    res = import_trace("acme", FIX / "acme_trace_seren_sample.csv")
    df = res.df.set_index("job_id")
    assert res.skipped == {"CPU job (gpu_num = 0)": 1}
    assert len(df) == 5
    big = df.loc["dlcabc004"]
    assert (big["gpus"], big["tenant"], big["kind"], big["status"]) == (1024, "u01", "Pretrain", "cancelled")
    assert big["submit_time"] == 600.0
    assert (big["recorded_start"], big["recorded_end"]) == (600.0 + 3600.0, 600.0 + 3600.0 + 172800.0)
    assert df.loc["dlcabc001", "recorded_start"] == 30.0
    assert set(df["tenant"]) == {"u01", "u03", "u04", "u05"}


def test_acme_converted_kalos_layout() -> None:
    raw = pd.read_csv(FIX / "acme_converted_kalos_cut.csv")
    res = import_trace("acme", FIX / "acme_converted_kalos_cut.csv")
    df = res.df.set_index("job_id")
    assert len(df) == len(raw) == 100
    # 2,14435.0,4504,0.5,0.25,8,0,8.0,... -> 64 GPUs, 4504 x 0.5 s.
    j2 = df.loc["2"]
    assert (j2["gpus"], j2["duration"], j2["submit_time"]) == (64, 2252.0, 14435.0)
    assert set(df["tenant"]) == {"kalos"} and set(df["status"]) == {"completed"}
    assert (df["gpus"] == raw["gpu_workers"].to_numpy() * raw["gpu_per_worker"].to_numpy()).all()


def test_acme_wrong_columns() -> None:
    with pytest.raises(TraceError, match="missing columns job_id, user, gpu_num, submit_time, duration needed by format acme") as exc:
        import_trace("acme", FIX / "pollux_workload-6.csv")
    assert str(exc.value).endswith("(found: name, time, application, num_replicas, batch_size)")
