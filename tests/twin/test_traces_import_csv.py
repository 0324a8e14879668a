"""The generic ``csv`` importer and its ``--map`` items; the importer table itself."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from gigafactory.twin.traces import IMPORTERS, TraceError, import_trace

FIX = Path(__file__).parents[1] / "fixtures" / "traces"
SOURCE = (
    "id,queued_at,nodes,runtime_min,owner,model\n"
    "007,2024-05-01T10:00:00Z,2,30,acme-lab,llama\n"
    "008,2024-05-01T10:05:00Z,1,1.5,sme-x,bert\n"
)


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "jobs.csv"
    path.write_text(SOURCE)
    return path


def test_map_columns_scales_and_dates(source: Path) -> None:
    res = import_trace(
        "csv", source,
        mapping=["id=job_id", "queued_at=submit_time", "nodes=gpus*8", "runtime_min=duration*60",
                 "owner=tenant", "model=kind"],
    )
    df = res.df.set_index("job_id")
    assert list(df.index) == ["007", "008"]  # ids stay text: leading zeros kept
    assert (df.loc["007", "gpus"], df.loc["007", "duration"], df.loc["007", "tenant"]) == (16, 1800.0, "acme-lab")
    assert (df.loc["008", "submit_time"], df.loc["008", "duration"]) == (300.0, 90.0)
    assert "gpus = nodes x 8" in res.notes
    assert any("2024-05-01 10:00:00 UTC" in n for n in res.notes)


def test_constant_field_and_canonical_names_pass_through(tmp_path: Path) -> None:
    path = tmp_path / "canon.csv"
    path.write_text("job_id,submit_time,gpus,duration,priority\na,5,1,10,urgent\nb,7,2,20,preemptible\n")
    df = import_trace("csv", path, mapping=["tenant:=lab-a"]).df
    assert df["tenant"].tolist() == ["lab-a", "lab-a"]
    assert df["priority"].tolist() == ["urgent", "preemptible"]
    assert df["submit_time"].tolist() == [0.0, 2.0]  # rebased to the earliest submit


def test_parquet_input(tmp_path: Path) -> None:
    path = tmp_path / "jobs.parquet"
    pd.DataFrame({"jid": ["x"], "t": [0.0], "n": [4], "secs": [60.0], "who": ["t1"]}).to_parquet(path)
    df = import_trace("csv", path, mapping=["jid=job_id", "t=submit_time", "n=gpus", "secs=duration", "who=tenant"]).df
    assert df.iloc[0]["gpus"] == 4 and df.iloc[0]["tenant"] == "t1"


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (["id"], "expected SOURCE=FIELD, SOURCE=FIELD*SCALE or FIELD:=VALUE"),
        (["id=jobid"], "unknown field 'jobid'; expected one of job_id, "),
        (["nope=job_id"], "has no column 'nope' (found: id, queued_at, nodes"),
        (["runtime_min=duration*sixty"], "scale 'sixty' is not a number"),
        (["owner=tenant*2"], "tenant is text and cannot be scaled"),
        (["id=job_id", "model=job_id"], "job_id is mapped twice"),
        (["id=job_id"], "no column for submit_time, gpus, duration, tenant; name one with --map"),
    ],
)
def test_bad_mappings_are_one_line_errors(source: Path, items: list[str], message: str) -> None:
    with pytest.raises(TraceError) as exc:
        import_trace("csv", source, mapping=items)
    assert message in str(exc.value)
    assert "\n" not in str(exc.value)


def test_scaled_column_with_text_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "j.csv"
    path.write_text("job_id,submit_time,gpus,mins,tenant\na,0,1,5,t\nb,1,1,lots,t\n")
    with pytest.raises(TraceError, match=r"j\.csv row 2: mins must be a number to scale, got 'lots'"):
        import_trace("csv", path, mapping=["mins=duration*60"])


def test_importer_table_and_option_checks() -> None:
    assert set(IMPORTERS) == {"alibaba-v2023", "gavel", "pollux", "tiresias", "philly", "helios", "acme", "csv"}
    with pytest.raises(TraceError, match="unknown trace format 'slurm'; expected one of alibaba-v2023, "):
        import_trace("slurm", FIX / "tiresias_60_job.csv")
    with pytest.raises(TraceError, match=r"--map does not apply to format 'tiresias' \(only to csv\)"):
        import_trace("tiresias", FIX / "tiresias_60_job.csv", mapping=["a=b"])
    with pytest.raises(TraceError, match=r"--throughputs does not apply to format 'csv' \(only to gavel\)"):
        import_trace("csv", FIX / "tiresias_60_job.csv", throughputs="x.json")
