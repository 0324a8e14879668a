"""Importer ``alibaba-v2023`` on a cut of the real pod list (first 150 pods + a few more)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gigafactory.twin.traces import COLUMNS, TraceError, import_trace

FIXTURE = Path(__file__).parents[1] / "fixtures" / "traces" / "alibaba_openb_pod_list_cut.csv"


def test_alibaba_cut_is_imported_with_documented_rules() -> None:
    raw = pd.read_csv(FIXTURE)
    res = import_trace("alibaba-v2023", FIXTURE)
    df = res.df
    assert list(df.columns) == list(COLUMNS)
    assert df["gpus"].dtype == np.int64 and str(df["job_id"].dtype) == "string"
    # 153 pods: 6 CPU-only and 14 never-scheduled pods are skipped and counted.
    assert len(raw) == 153
    assert dict(res.skipped) == {
        "CPU-only pod (num_gpu = 0)": 6,
        "pod never scheduled (no scheduled_time)": 14,
    }
    assert len(df) == 153 - 20
    frac = raw[(raw.num_gpu == 1) & (raw.gpu_milli < 1000) & raw.scheduled_time.notna()]
    assert res.adjusted["fractional GPU share rounded up to 1 GPU"] == len(frac) == 50
    assert res.adjusted["alive at trace end (duration is a lower bound)"] == 15
    assert set(df["tenant"]) == {"alibaba"}
    assert any("single tenant 'alibaba'" in n for n in res.notes)


def test_alibaba_known_rows() -> None:
    df = import_trace("alibaba-v2023", FIXTURE).df.set_index("job_id")
    # openb-pod-0001,6000,12288,1,460,,LS,Running,427061,12902960,427061
    p1 = df.loc["openb-pod-0001"]
    assert p1["gpus"] == 1  # 0.46 of a GPU rounds up to one GPU
    assert p1["submit_time"] == 427061.0
    assert p1["duration"] == 12902960 - 427061
    assert (p1["recorded_start"], p1["recorded_end"]) == (427061.0, 12902960.0)
    assert (p1["priority"], p1["kind"], p1["status"]) == ("normal", "LS", "running")
    # openb-pod-0017,88000,327680,8,1000,,Burstable,Succeeded,9437497,10769854,9437497
    p17 = df.loc["openb-pod-0017"]
    assert (p17["gpus"], p17["duration"], p17["status"]) == (8, 10769854 - 9437497, "completed")
    # A best-effort pod is preemptible.
    assert set(df.loc[df["kind"] == "BE", "priority"]) == {"preemptible"}
    assert "openb-pod-0061" not in df.index  # Pending, never scheduled


def test_alibaba_gpu_spec_becomes_accelerator_and_times_rebase(tmp_path: Path) -> None:
    raw = pd.read_csv(FIXTURE, dtype={"gpu_spec": "string"}).iloc[10:20].copy()
    raw["gpu_spec"] = "V100M16|V100M32"
    path = tmp_path / "spec.csv"
    raw.to_csv(path, index=False)
    res = import_trace("alibaba-v2023", path)
    first = raw.loc[raw.num_gpu > 0, "creation_time"].min()
    assert res.df["submit_time"].min() == 0.0
    assert any(f"earliest submit ({first:g} s on the source clock) is time 0" in n for n in res.notes)
    assert set(res.df["accelerator"]) == {"V100M16|V100M32"}
    assert (res.df["recorded_start"] >= res.df["submit_time"]).all()


def test_alibaba_bad_time_is_reported_with_row(tmp_path: Path) -> None:
    raw = pd.read_csv(FIXTURE, dtype=str, keep_default_na=False).iloc[:5].copy()
    raw.loc[3, "deletion_time"] = "soon"
    path = tmp_path / "bad.csv"
    raw.to_csv(path, index=False)
    with pytest.raises(TraceError, match=r"bad\.csv row 4: deletion_time must be seconds or a date, got 'soon'"):
        import_trace("alibaba-v2023", path)
    res = import_trace("alibaba-v2023", path, skip_invalid=True)
    assert res.skipped["deletion_time must be seconds or a date"] == 1
    assert len(res.df) == 4


def test_alibaba_timing_free_files_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "openb_pod_list_multigpu50.csv"
    path.write_text("name,cpu_milli,memory_mib,num_gpu,gpu_milli\nopenb-pod-0000,12000,16384,1,1000\n")
    with pytest.raises(TraceError, match="missing columns creation_time, deletion_time, scheduled_time needed by format alibaba-v2023"):
        import_trace("alibaba-v2023", path)


REAL = Path("/work/shared/traces/alibaba-gpu-v2023/csv/openb_pod_list_default.csv")


@pytest.mark.skipif(not REAL.exists(), reason="the shared Alibaba v2023 trace is not on this machine")
def test_alibaba_full_default_trace() -> None:
    res = import_trace("alibaba-v2023", REAL)
    assert len(res.df) == 6203
    assert res.skipped["CPU-only pod (num_gpu = 0)"] == 1088
    assert res.skipped["pod never scheduled (no scheduled_time)"] == 861
    assert res.df["gpus"].value_counts().to_dict() == {1: 6129, 8: 44, 2: 15, 4: 15}
