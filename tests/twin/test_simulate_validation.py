"""Validation against a recorded trace: node-list facilities, kube-default, KS in the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from gigafactory.cli import twin_cmd
from gigafactory.core.policies import POLICIES
from gigafactory.facility_files import FacilityFileError, load_facility
from gigafactory.twin.validate import KUBE_DEFAULT, resolve_policy

NODES = "sn,cpu_milli,memory_mib,gpu,model\nn0,64000,1,2,P100\nn1,64000,1,8,G2\nn2,64000,1,0,\nn3,1,1,8,G2\n"
HEADER = "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,deletion_time,scheduled_time\n"
PODS = HEADER + "\n".join([
    "p0,1,1,8,1000,,LS,Running,0,1000,0",
    "p1,1,1,8,1000,,LS,Running,10,500,10",
    "p2,1,1,8,1000,,BE,Succeeded,20,900,400",  # recorded: waited 380 s
    "p3,1,1,1,300,,BE,Running,30,100,35",  # fractional GPU, recorded wait 5 s
    "p4,1,1,0,0,,LS,Running,40,50,40",  # CPU-only: skipped and counted
]) + "\n"

app = typer.Typer()


@app.callback()
def _root() -> None:
    """Test root."""


twin_cmd.register(app)


def test_node_list_becomes_one_pool_per_model_and_size(tmp_path: Path) -> None:
    p = tmp_path / "nodes.csv"
    p.write_text(NODES)
    f = load_facility(f"nodes:{p}")
    assert f.total_gpus == 18 and f.n_nodes == 3
    pools = [(q.accelerator, q.nodes, q.gpus_per_node) for q in f.spec.sites[0].pools]
    assert pools == [("P100", 1, 2), ("G2", 2, 8)]
    assert f.spec.accelerators[0].watts == 250


def test_bad_node_list_is_one_line(tmp_path: Path) -> None:
    p = tmp_path / "nodes.csv"
    p.write_text("sn,gpu\nn0,2\n")
    with pytest.raises(FacilityFileError, match="missing column model"):
        load_facility(f"nodes:{p}")
    p.write_text("sn,gpu,model\nn0,2,T4\nn1,two,T4\n")
    with pytest.raises(FacilityFileError, match=r"nodes.csv row 2: gpu must be a whole number >= 0, got 'two'"):
        load_facility(f"nodes:{p}")
    with pytest.raises(FacilityFileError, match="no such file"):
        load_facility(f"nodes:{tmp_path / 'none.csv'}")


def test_kube_default_is_a_configuration_of_the_core_fifo() -> None:
    assert resolve_policy("kube-default") == "kube-default"  # in the core's one registry
    assert POLICIES["kube-default"] is KUBE_DEFAULT
    assert resolve_policy("fifo") == "fifo"
    assert not (KUBE_DEFAULT.strict or KUBE_DEFAULT.reserve or KUBE_DEFAULT.backfill or KUBE_DEFAULT.reclaim)


def test_replay_reports_ks_distance_against_recorded_waits(tmp_path: Path) -> None:
    (tmp_path / "nodes.csv").write_text(NODES)
    (tmp_path / "pods.csv").write_text(PODS)
    out = tmp_path / "out"
    res = CliRunner().invoke(app, [
        "simulate", "-f", f"nodes:{tmp_path / 'nodes.csv'}", "-w", f"alibaba-v2023:{tmp_path / 'pods.csv'}",
        "-p", "kube-default", "--no-failures", "--validate", "-o", str(out), "-q"])
    assert res.exit_code == 0, res.output
    s = json.loads((out / "summary.json").read_text())
    v = s["validation"]
    assert v["jobs_compared"] == 4
    # the twin: p0, p1 start at once on the two G2 nodes, p2 waits for p1 (ends 500) -> 480 s,
    # p3 at once on the P100 node; recorded: 0, 0, 380, 5
    assert v["simulated"]["max_s"] == 480 and v["recorded"]["max_s"] == 380
    assert v["ks_distance"] == pytest.approx(0.25)
    assert any("CPU-only" in a for a in s["assumptions"])
    page = (out / "report.html").read_text()
    assert "Validation against the recorded trace" in page and "Kolmogorov" in page
    assert page.count("data:image/png;base64,") == 5
