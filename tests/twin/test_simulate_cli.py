"""``gigafactory simulate`` / ``compare``: outputs, and one clear line for every bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from gigafactory.cli import twin_cmd

app = typer.Typer()


@app.callback()
def _root() -> None:
    """Test root: keeps simulate and compare as sub-commands."""


twin_cmd.register(app)
runner = CliRunner()

TRACE = """job_id,submit_time,gpus,duration,tenant,checkpoint_interval
a,0,8,600,lab-a,
b,10,16,1200,lab-b,300
c,20,4,60,lab-a,
d,30,32,900,lab-c,
"""


def _run(*args: str):
    return runner.invoke(app, list(args))


def _one_error_line(res, *needles: str) -> None:
    assert res.exit_code == 2, res.output
    text = res.output.strip()
    assert "Traceback" not in text
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), text
    for n in needles:
        assert n in text, text


@pytest.fixture
def trace(tmp_path: Path) -> Path:
    p = tmp_path / "trace.csv"
    p.write_text(TRACE)
    return p


def test_simulate_a_trace_writes_the_outputs(trace: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = _run("simulate", "-f", "dev-32", "-w", str(trace), "-p", "easy-backfill", "-o", str(out),
               "--no-failures", "--validate", "--quiet")
    assert res.exit_code == 0, res.output
    s = json.loads((out / "summary.json").read_text())
    assert s["jobs_completed"] == 4 and s["policy"] == "easy-backfill"
    assert [p["partner"] for p in s["partners"]] == ["lab-a", "lab-b", "lab-c"]
    assert (out / "report.html").exists() and (out / "jobs.parquet").exists()


def test_simulate_synthetic_with_interval_cycle_and_failures(tmp_path: Path) -> None:
    res = _run("simulate", "-f", "dev-32", "-w", "synthetic:jobs=30,load=0.5,seed=3,days=1",
               "--cycle", "events+60", "--mtbf-hours", "48", "-o", str(tmp_path / "o"))
    assert res.exit_code == 0, res.output
    assert "report:" in res.output and "utilisation" in res.output
    s = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert any("every 60 s" in a for a in s["assumptions"])


def test_missing_file(tmp_path: Path) -> None:
    _one_error_line(_run("simulate", "-f", "dev-32", "-w", str(tmp_path / "nope.csv"), "-o", str(tmp_path)),
                    "nope.csv: no such file")


def test_unknown_format(tmp_path: Path) -> None:
    p = tmp_path / "jobs.txt"
    p.write_text("x")
    _one_error_line(_run("simulate", "-f", "dev-32", "-w", str(p), "-o", str(tmp_path)),
                    "jobs.txt", "unknown trace file type")
    _one_error_line(_run("simulate", "-f", "dev-32", "-w", "slurm:x.log", "-o", str(tmp_path)),
                    "unknown workload format 'slurm'")


def test_malformed_and_negative_rows_name_the_row(tmp_path: Path) -> None:
    p = tmp_path / "bad.csv"
    p.write_text(TRACE.replace("c,20,4,60,", "c,20,4,-60,").replace("d,30,32,", "d,30,many,"))
    res = _run("simulate", "-f", "dev-32", "-w", str(p), "-o", str(tmp_path / "o"))
    _one_error_line(res, "bad.csv row 3", "duration must be > 0", "-60", "2 invalid rows")
    res = _run("simulate", "-f", "dev-32", "-w", str(p), "-o", str(tmp_path / "o"), "--skip-invalid", "-q")
    assert res.exit_code == 0, res.output
    s = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert s["jobs"] == 2
    assert any("skipped trace rows" in a and "duration must be > 0: 1" in a for a in s["assumptions"])


def test_gang_bigger_than_the_facility(trace: Path, tmp_path: Path) -> None:
    p = tmp_path / "big.csv"
    p.write_text(TRACE.replace("d,30,32,", "d,30,64,"))
    _one_error_line(_run("simulate", "-f", "dev-32", "-w", str(p), "-o", str(tmp_path / "o")),
                    "job d asks for 64 GPUs", "dev-32", "--skip-invalid")
    res = _run("simulate", "-f", "dev-32", "-w", str(p), "-o", str(tmp_path / "o"), "--skip-invalid", "-q")
    assert res.exit_code == 0
    s = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert s["jobs"] == 3 and any("gang bigger than the facility: 1" in a for a in s["assumptions"])


def test_unknown_tenant_with_a_tree_file(trace: Path, tmp_path: Path) -> None:
    tree = tmp_path / "tree.yaml"
    tree.write_text("tenants:\n  - {name: lab-a, kind: partner, guarantee: 16}\n"
                    "  - {name: lab-b, kind: partner, guarantee: 16}\n")
    _one_error_line(_run("simulate", "-f", "dev-32", "-w", str(trace), "--tree", str(tree), "-o", str(tmp_path)),
                    "unknown tenant 'lab-c' (1 jobs)", "tree.yaml")


def test_bad_tree_file_names_the_field(trace: Path, tmp_path: Path) -> None:
    tree = tmp_path / "tree.toml"
    tree.write_text('[[tenants]]\nname = "lab-a"\nguarantee = -4\n')
    _one_error_line(_run("simulate", "-f", "dev-32", "-w", str(trace), "--tree", str(tree), "-o", str(tmp_path)),
                    "tree.toml: tenants[0]", "guarantee must not be negative")
    tree.write_text('[[tenants]]\nname = "lab-a"\ncolour = "red"\n')
    _one_error_line(_run("simulate", "-f", "dev-32", "-w", str(trace), "--tree", str(tree), "-o", str(tmp_path)),
                    "unknown field 'colour'")


def test_bad_facility_file_names_the_field(trace: Path, tmp_path: Path) -> None:
    fac = tmp_path / "site.yaml"
    fac.write_text("name: s\naccelerators:\n  - {name: H100, memory_gb: 80, bf16_tflops: 989, watts: 700}\n"
                   "sites:\n  - name: a\n    pools:\n      - {accelerator: H100, nodes: 0}\n")
    _one_error_line(_run("simulate", "-f", str(fac), "-w", str(trace), "-o", str(tmp_path)),
                    "site.yaml: sites[0].pools[0].nodes", "greater than or equal to 1")
    _one_error_line(_run("simulate", "-f", "moon-base", "-w", str(trace), "-o", str(tmp_path)),
                    "unknown facility 'moon-base'")


def test_facility_file_runs(trace: Path, tmp_path: Path) -> None:
    fac = tmp_path / "site.toml"
    fac.write_text('name = "tiny"\n[[accelerators]]\nname = "H100"\nmemory_gb = 80\nbf16_tflops = 989\n'
                   'watts = 700\n[[sites]]\nname = "a"\n[[sites.pools]]\naccelerator = "H100"\nnodes = 8\n')
    res = _run("simulate", "-f", str(fac), "-w", str(trace), "-o", str(tmp_path / "o"), "-q")
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "o" / "summary.json").read_text())["gpus"] == 64


def test_bad_options_are_one_line(trace: Path, tmp_path: Path) -> None:
    _one_error_line(_run("simulate", "-w", str(trace), "-f", "dev-32", "-p", "magic", "-o", str(tmp_path)),
                    "unknown policy 'magic'")
    _one_error_line(_run("simulate", "-w", str(trace), "-f", "dev-32", "--cycle", "often", "-o", str(tmp_path)),
                    "cycle must be")
    _one_error_line(_run("simulate", "-w", "synthetic:jobs=-1", "-f", "dev-32", "-o", str(tmp_path)),
                    "jobs must be at least 1")


def test_compare_two_policies_one_report(trace: Path, tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    res = _run("compare", "-w", str(trace), "-f", "dev-32", "-p", "fifo", "-p", "las", "-o", str(out),
               "--workers", "1", "--no-failures")
    assert res.exit_code == 0, res.output
    s = json.loads((out / "summary.json").read_text())
    assert list(s["runs"]) == ["fifo", "las"]
    assert (out / "fifo" / "report.html").exists() and (out / "las" / "jobs.parquet").exists()
    page = (out / "report.html").read_text()
    assert "fifo" in page and "las" in page
