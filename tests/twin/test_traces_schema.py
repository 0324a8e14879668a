"""The canonical trace format: reading, writing and the schema check."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gigafactory.twin.traces import COLUMNS, TraceError, read_trace, write_trace


def _jobs(n: int = 20) -> pd.DataFrame:
    return pd.DataFrame({
        "job_id": [f"j{i:03d}" for i in range(n)],
        "submit_time": [float(10 * (n - i)) for i in range(n)],  # reverse order on purpose
        "gpus": [1 + (i % 4) * 2 for i in range(n)],
        "duration": [100.0 + i for i in range(n)],
        "tenant": ["lab-a" if i % 2 else "sme-b" for i in range(n)],
    })


def _write_csv(tmp_path: Path, df: pd.DataFrame, name: str = "trace.csv") -> Path:
    path = tmp_path / name
    df.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("name", ["t.parquet", "t.csv", "t.csv.gz"])
def test_write_then_read_round_trip(tmp_path: Path, name: str) -> None:
    df = _jobs()
    df["priority"] = ["urgent", "normal", "preemptible", None] * 5
    write_trace(df, tmp_path / name)
    load = read_trace(tmp_path / name)
    out = load.df
    assert list(out.columns) == list(COLUMNS)
    assert str(out["job_id"].dtype) == "string"
    assert out["gpus"].dtype == np.int64
    assert out["submit_time"].dtype == np.float64
    assert out["submit_time"].is_monotonic_increasing
    assert out["job_id"].iloc[0] == "j019"  # submitted first (t=10)
    row = out.set_index("job_id").loc["j002"]
    assert (row["gpus"], row["duration"], row["tenant"], row["priority"]) == (5, 102.0, "sme-b", "preemptible")
    assert out.set_index("job_id").loc["j003", "priority"] is pd.NA
    assert out["checkpoint_interval"].isna().all()  # absent optional column -> missing values
    assert not load.skipped


def test_ties_in_submit_time_are_ordered_by_job_id(tmp_path: Path) -> None:
    df = _jobs(3)
    df["submit_time"] = 5.0
    df["job_id"] = ["c", "a", "b"]
    out = read_trace(_write_csv(tmp_path, df)).df
    assert out["job_id"].tolist() == ["a", "b", "c"]


def test_bad_row_names_file_row_and_reason(tmp_path: Path) -> None:
    df = _jobs()
    df.loc[16, "duration"] = -3  # 17th data row
    path = _write_csv(tmp_path, df)
    with pytest.raises(TraceError) as exc:
        read_trace(path)
    msg = str(exc.value)
    assert f"{path} row 17: duration must be > 0, got -3" in msg
    assert "1 invalid row" in msg
    assert "\n" not in msg


def test_many_bad_rows_report_the_first_three_and_the_total(tmp_path: Path) -> None:
    df = _jobs().astype({"gpus": "object", "duration": "object"})
    df.loc[2, "gpus"] = 0
    df.loc[4, "gpus"] = 2.5
    df.loc[6, "duration"] = "abc"
    df.loc[8, "tenant"] = None
    df.loc[9, "job_id"] = "j000"
    path = _write_csv(tmp_path, df)
    with pytest.raises(TraceError) as exc:
        read_trace(path)
    msg = str(exc.value)
    assert msg.startswith(f"{path} row 3: gpus must be >= 1, got 0; row 5: ")  # the file is named once
    assert "row 5: gpus must be a whole number, got 2.5" in msg
    assert "row 7: duration must be a number, got 'abc'" in msg
    assert "row 9" not in msg  # only the first three are spelled out
    assert "5 invalid rows in all" in msg
    assert "--skip-invalid" in msg


def test_skip_invalid_drops_and_counts_by_reason(tmp_path: Path) -> None:
    df = _jobs().astype({"gpus": "object", "duration": "object", "submit_time": "object"})
    df.loc[[1, 2], "duration"] = 0
    df.loc[3, "gpus"] = -1
    df.loc[4, "submit_time"] = -5
    df.loc[5, "job_id"] = "j000"
    df.loc[6, "tenant"] = " "
    df["priority"] = "normal"
    df.loc[7, "priority"] = "high"
    df["recorded_start"] = df["submit_time"]
    df["recorded_end"] = 1000.0
    df.loc[8, "recorded_end"] = 0.0
    df.loc[10, "duration"] = float("inf")
    load = read_trace(_write_csv(tmp_path, df), skip_invalid=True)
    assert dict(load.skipped) == {
        "duration must be > 0": 2,
        "gpus must be >= 1": 1,
        "submit_time must be >= 0": 1,
        "job_id must be unique": 1,
        "tenant is missing": 1,
        "priority must be one of urgent, normal, preemptible": 1,
        "recorded_end must be >= recorded_start": 1,
        "duration must be finite": 1,
    }
    assert load.n_skipped == 9
    assert len(load.df) == 11
    assert "j005" not in set(load.df["job_id"])  # the duplicate row went, the first stays
    assert (load.df["job_id"] == "j000").sum() == 1


def test_a_bad_first_copy_does_not_make_a_good_duplicate_invalid(tmp_path: Path) -> None:
    df = _jobs(3)
    df.loc[1, "job_id"] = "j000"
    df.loc[0, "gpus"] = 0
    load = read_trace(_write_csv(tmp_path, df), skip_invalid=True)
    assert dict(load.skipped) == {"gpus must be >= 1": 1}
    assert sorted(load.df["job_id"]) == ["j000", "j002"]


def test_priority_is_case_insensitive(tmp_path: Path) -> None:
    df = _jobs(2)
    df["priority"] = [" Urgent", "PREEMPTIBLE"]
    out = read_trace(_write_csv(tmp_path, df)).df
    assert sorted(out["priority"]) == ["preemptible", "urgent"]


def test_recorded_start_before_submit_is_reported(tmp_path: Path) -> None:
    df = _jobs(2)
    df["recorded_start"] = [df["submit_time"][0] - 1, df["submit_time"][1]]
    with pytest.raises(TraceError, match=r"row 1: recorded_start must be >= submit_time, got 19 < 20"):
        read_trace(_write_csv(tmp_path, df))


def test_extra_columns_are_kept_after_the_canonical_ones(tmp_path: Path) -> None:
    df = _jobs(3)
    df["vc"] = ["x", "y", "z"]
    out = read_trace(_write_csv(tmp_path, df)).df
    assert list(out.columns) == [*COLUMNS, "vc"]


def test_missing_file_unknown_suffix_and_missing_column(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match=r"nope\.parquet: no such file$"):
        read_trace(tmp_path / "nope.parquet")
    odd = tmp_path / "trace.json"
    odd.write_text("{}")
    with pytest.raises(TraceError, match=r"unknown trace file type '\.json'"):
        read_trace(odd)
    path = _write_csv(tmp_path, _jobs(3).drop(columns=["tenant", "gpus"]))
    with pytest.raises(TraceError, match=r"missing required columns gpus, tenant \(found: job_id, "):
        read_trace(path)


def test_empty_and_garbled_files_are_one_line_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(TraceError, match="the file is empty"):
        read_trace(empty)
    garbled = tmp_path / "garbled.parquet"
    garbled.write_bytes(b"not parquet at all")
    with pytest.raises(TraceError, match="cannot read as parquet") as exc:
        read_trace(garbled)
    assert "\n" not in str(exc.value)


def test_write_trace_refuses_bad_rows_and_missing_directory(tmp_path: Path) -> None:
    df = _jobs(3)
    df.loc[1, "gpus"] = 0
    with pytest.raises(TraceError, match="row 2: gpus must be >= 1, got 0"):
        write_trace(df, tmp_path / "out.parquet")
    assert not (tmp_path / "out.parquet").exists()
    with pytest.raises(TraceError, match="does not exist"):
        write_trace(_jobs(3), tmp_path / "missing" / "out.parquet")


def test_integer_job_ids_in_parquet_become_strings(tmp_path: Path) -> None:
    df = _jobs(3)
    df["job_id"] = [7, 8, 9]
    path = tmp_path / "ints.parquet"
    df.to_parquet(path)
    out = read_trace(path).df
    assert sorted(out["job_id"]) == ["7", "8", "9"]
