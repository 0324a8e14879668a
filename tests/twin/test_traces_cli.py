"""``gigafactory trace import`` and ``trace stats`` through Typer's test runner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from gigafactory.cli.trace_cmd import register
from gigafactory.twin.traces import read_trace

FIX = Path(__file__).parents[1] / "fixtures" / "traces"
runner = CliRunner()


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    """A bare app with only the trace commands (the real one registers the same way)."""
    root = typer.Typer(add_completion=False)

    @root.callback()
    def _root() -> None:
        """Test root."""

    register(root)
    return root


def _one_line_error(output: str, expected: str) -> None:
    assert "Traceback" not in output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert lines[0].startswith("error: ")
    assert expected in lines[0]


def test_import_gavel_directory(app: typer.Typer, tmp_path: Path) -> None:
    out = tmp_path / "gavel.parquet"
    result = runner.invoke(app, ["trace", "import", "gavel", str(FIX / "gavel" / "msr" / "seed=0"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "imported 177 jobs of 3 tenant(s)" in result.output
    assert "55  no exact throughput entry" in result.output
    assert "fallback for 55 of 177 rows" in result.output
    assert len(read_trace(out).df) == 177


def test_import_reports_skips_and_writes_csv(app: typer.Typer, tmp_path: Path) -> None:
    out = tmp_path / "alibaba.csv"
    result = runner.invoke(app, ["trace", "import", "alibaba-v2023", str(FIX / "alibaba_openb_pod_list_cut.csv"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "skipped rows: 20" in result.output
    assert "6  CPU-only pod (num_gpu = 0)" in result.output
    assert len(read_trace(out).df) == 133


def test_import_csv_with_map(app: typer.Typer, tmp_path: Path) -> None:
    out = tmp_path / "t.parquet"
    result = runner.invoke(app, [
        "trace", "import", "csv", str(FIX / "tiresias_60_job.csv"), "-o", str(out),
        "--map", "num_gpu=gpus", "--map", "tenant:=lab", "--map", "duration=duration*2",
    ])
    assert result.exit_code == 0, result.output
    df = read_trace(out).df
    assert set(df["tenant"]) == {"lab"}
    assert df.set_index("job_id").loc["0", "duration"] == 328.0  # 164 s x 2


def test_import_invalid_rows_fail_then_skip(app: typer.Typer, tmp_path: Path) -> None:
    out = tmp_path / "t.parquet"
    args = ["trace", "import", "tiresias", str(FIX / "tiresias_tf_job.csv"), "-o", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    _one_line_error(result.output, "tiresias_tf_job.csv row 2: job_id must be unique, got '10'")
    assert not out.exists()
    result = runner.invoke(app, [*args, "--skip-invalid"])
    assert result.exit_code == 0, result.output
    assert "1  job_id must be unique" in result.output


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["slurm", "x.csv"], "unknown trace format 'slurm'"),
        (["helios", "missing.csv"], "missing.csv: no such file"),
        (["helios", str(FIX / "pollux_workload-6.csv")], "missing columns job_id, vc, gpu_num"),
        (["tiresias", str(FIX / "tiresias_60_job.csv"), "--map", "a=b"], "--map does not apply to format 'tiresias'"),
        (["gavel", str(FIX / "gavel"), "--throughputs", "nope.json"], "no per-VC .trace files"),
    ],
)
def test_import_errors_are_one_red_line(app: typer.Typer, tmp_path: Path, args: list[str], expected: str) -> None:
    result = runner.invoke(app, ["trace", "import", *args, "-o", str(tmp_path / "o.parquet")])
    assert result.exit_code == 2
    _one_line_error(result.output, expected)


def test_import_refuses_a_bad_output_before_importing(app: typer.Typer, tmp_path: Path) -> None:
    result = runner.invoke(app, ["trace", "import", "pollux", str(FIX / "pollux_workload-6.csv"), "-o", str(tmp_path / "o.txt")])
    assert result.exit_code == 2
    _one_line_error(result.output, "unknown trace file type '.txt'")
    result = runner.invoke(app, ["trace", "import", "pollux", str(FIX / "pollux_workload-6.csv"), "-o", str(tmp_path / "no" / "o.csv")])
    assert result.exit_code == 2
    _one_line_error(result.output, "does not exist")


def test_import_with_nothing_left_is_an_error(app: typer.Typer, tmp_path: Path) -> None:
    src = tmp_path / "cpu.csv"
    src.write_text("job_id,user,vc,jobname,gpu_num,cpu_num,state,submit_time,duration\na,u,v,j,0,1,COMPLETED,0,5\n")
    result = runner.invoke(app, ["trace", "import", "helios", str(src), "-o", str(tmp_path / "o.parquet")])
    assert result.exit_code == 2
    _one_line_error(result.output, "no jobs left to write (1 skipped: CPU job (gpu_num = 0): 1)")


@pytest.fixture(scope="module")
def gavel_trace(app: typer.Typer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("stats") / "gavel.parquet"
    result = runner.invoke(app, ["trace", "import", "gavel", str(FIX / "gavel" / "msr" / "seed=0"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_stats_json(app: typer.Typer, gavel_trace: Path) -> None:
    result = runner.invoke(app, ["trace", "stats", str(gavel_trace), "--json"])
    assert result.exit_code == 0, result.output
    s = json.loads(result.output)
    df = read_trace(gavel_trace).df
    assert s["jobs"] == 177 and s["tenants"] == 3
    assert s["gpus_per_job"]["max"] == int(df["gpus"].max())
    assert s["offered_gpu_hours"] == pytest.approx(float((df["gpus"] * df["duration"]).sum() / 3600))
    assert sum(b["jobs"] for b in s["size_bands"]) == 177
    by_tenant = (df["gpus"] * df["duration"]).groupby(df["tenant"]).sum().sort_values(ascending=False)
    assert [t["tenant"] for t in s["per_tenant"]] == list(by_tenant.index)
    assert s["duration_s"]["p50"] == pytest.approx(float(df["duration"].median()))
    assert s["skipped"] == {}


def test_stats_tables(app: typer.Typer, gavel_trace: Path) -> None:
    result = runner.invoke(app, ["trace", "stats", str(gavel_trace), "--top", "2"])
    assert result.exit_code == 0, result.output
    for text in ("jobs", "177", "offered GPU-hours", "gang sizes", "2869ce", "and 1 more tenant(s)"):
        assert text in result.output
    assert "23dbec" not in result.output  # the smallest tenant is beyond --top 2


def test_stats_errors_and_skip_invalid(app: typer.Typer, tmp_path: Path) -> None:
    result = runner.invoke(app, ["trace", "stats", str(tmp_path / "none.parquet")])
    assert result.exit_code == 2
    _one_line_error(result.output, "none.parquet: no such file")
    bad = tmp_path / "bad.csv"
    bad.write_text("job_id,submit_time,gpus,duration,tenant\na,0,1,10,t\nb,1,0,10,t\n")
    result = runner.invoke(app, ["trace", "stats", str(bad)])
    assert result.exit_code == 2
    _one_line_error(result.output, "bad.csv row 2: gpus must be >= 1, got 0")
    result = runner.invoke(app, ["trace", "stats", str(bad), "--skip-invalid", "--json"])
    assert result.exit_code == 0
    assert json.loads(result.output)["skipped"] == {"gpus must be >= 1": 1}


def test_help_explains_every_option(app: typer.Typer) -> None:
    result = runner.invoke(app, ["trace", "import", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for text in ("--output", "--skip-invalid", "--map", "--throughputs", "gavel", "alibaba-v2023", "simulation_throughputs.json"):
        assert text in result.output
    result = runner.invoke(app, ["trace", "stats", "--help"], env={"COLUMNS": "200"})
    assert "--json" in result.output and "--top" in result.output
