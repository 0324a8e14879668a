"""Importer ``gavel`` on real Gavel VC files (two whole, one cut to 150 rows)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from gigafactory.twin.traces import TraceError, import_trace

GAVEL = Path(__file__).parents[1] / "fixtures" / "traces" / "gavel"
SEED0 = GAVEL / "msr" / "seed=0"
FALLBACK = "no exact throughput entry: linear scaling from the largest listed scale"
# V100 isolated throughputs (steps/s) from simulation_throughputs.json.
TP_TRANSFORMER_256_AT_8 = 9.71702368412533
TP_CYCLEGAN_AT_1 = 4.426088263367452
TP_LM20_AT_8 = 497.2952582330656


def test_gavel_directory_one_tenant_per_vc_with_fallback_count() -> None:
    res = import_trace("gavel", SEED0)  # throughputs found next to msr/
    df = res.df
    assert len(df) == 9 + 18 + 150
    assert df["tenant"].value_counts().to_dict() == {"2869ce": 150, "51b7ef": 18, "23dbec": 9}
    assert not res.skipped
    assert res.adjusted[FALLBACK] == 55
    assert any("fallback for 55 of 177 rows" in n for n in res.notes)
    assert df["submit_time"].is_monotonic_increasing
    assert df["submit_time"].min() == 0.0
    assert df["accelerator"].isna().all()


def test_gavel_known_rows_exact_and_fallback() -> None:
    df = import_trace("gavel", SEED0).df.set_index("job_id")
    exact = df.loc["23dbec/3"]  # Transformer (batch size 256), 19178 steps, t=182095, 8 GPUs
    assert (exact["gpus"], exact["submit_time"], exact["kind"]) == (8, 182095.0, "Transformer (batch size 256)")
    assert exact["duration"] == pytest.approx(19178 / TP_TRANSFORMER_256_AT_8)
    cyc = df.loc["23dbec/9"]  # CycleGAN is listed at 1 GPU only: 8 x the 1-GPU throughput
    assert cyc["gpus"] == 8
    assert cyc["duration"] == pytest.approx(55992 / (TP_CYCLEGAN_AT_1 * 8))
    lm = df.loc["2869ce/36"]  # LM (batch size 20) on 32 GPUs: 4 x the 8-GPU throughput
    assert lm["duration"] == pytest.approx(5112337 / (TP_LM20_AT_8 / 8 * 32))


def test_gavel_single_file_and_explicit_throughputs(tmp_path: Path) -> None:
    trace = tmp_path / "vc9.trace"
    shutil.copy(SEED0 / "51b7ef.trace", trace)
    with pytest.raises(TraceError, match="pass --throughputs FILE"):
        import_trace("gavel", trace)
    res = import_trace("gavel", trace, throughputs=GAVEL / "simulation_throughputs.json")
    assert len(res.df) == 18
    assert set(res.df["tenant"]) == {"vc9"}


def test_gavel_whole_cluster_file_is_left_out_of_a_directory(tmp_path: Path) -> None:
    d = tmp_path / "seed=1"
    d.mkdir()
    shutil.copy(SEED0 / "23dbec.trace", d)
    shutil.copy(SEED0 / "23dbec.trace", d / "philly.trace")
    res = import_trace("gavel", d, throughputs=GAVEL / "simulation_throughputs.json")
    assert len(res.df) == 9
    assert any("left out philly.trace" in n for n in res.notes)


def test_gavel_unknown_job_type_is_an_error_or_counted(tmp_path: Path) -> None:
    table = json.loads((GAVEL / "simulation_throughputs.json").read_text())
    table["v100"] = {k: v for k, v in table["v100"].items() if "CycleGAN" not in k}
    tp = tmp_path / "tp.json"
    tp.write_text(json.dumps(table))
    with pytest.raises(TraceError, match=r"23dbec\.trace row 9: job type has no V100 throughput entry in tp\.json, got 'CycleGAN'"):
        import_trace("gavel", SEED0, throughputs=tp)
    res = import_trace("gavel", SEED0, throughputs=tp, skip_invalid=True)
    n_cyclegan = sum(
        line.startswith("CycleGAN\t") for f in SEED0.glob("*.trace") for line in f.read_text().splitlines()
    )
    assert res.skipped == {"job type has no V100 throughput entry in tp.json": n_cyclegan}
    assert len(res.df) == 177 - n_cyclegan


def test_gavel_ten_field_layout(tmp_path: Path) -> None:
    trace = tmp_path / "testbed.trace"
    trace.write_text(
        "ResNet-18 (batch size 64)\tpython3 main.py\tcifar10\t--num_steps\t1\t2409\t2\t1\t-1.000000\t30\n"
        "A3C\tpython3 main.py\ta3c\t--max-steps\t0\t7000\t4\t1\t-1.000000\t0\n"
    )
    res = import_trace("gavel", trace, throughputs=GAVEL / "simulation_throughputs.json")
    df = res.df.set_index("job_id")
    assert df.loc["testbed/1", "submit_time"] == 30.0
    assert df.loc["testbed/1", "gpus"] == 2
    assert df.loc["testbed/2", "duration"] == pytest.approx(7000 / (7.175767179667988 * 4))
    assert res.adjusted[FALLBACK] == 1


def test_gavel_bad_layout_and_missing_path(tmp_path: Path) -> None:
    trace = tmp_path / "x.trace"
    trace.write_text("a\tb\tc\n")
    with pytest.raises(TraceError, match="7 or 10 tab-separated fields per line, found 3"):
        import_trace("gavel", trace, throughputs=GAVEL / "simulation_throughputs.json")
    with pytest.raises(TraceError, match="no such file"):
        import_trace("gavel", tmp_path / "none.trace", throughputs=GAVEL / "simulation_throughputs.json")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(TraceError, match=r"no per-VC \.trace files"):
        import_trace("gavel", empty, throughputs=GAVEL / "simulation_throughputs.json")
    bad_tp = tmp_path / "tp.json"
    bad_tp.write_text('{"k80": {}}')
    with pytest.raises(TraceError, match="no 'v100' throughput table"):
        import_trace("gavel", SEED0, throughputs=bad_tp)


REAL = Path("/work/shared/traces/gavel-philly-derived/msr/seed=0")


@pytest.mark.skipif(not REAL.exists(), reason="the shared Gavel traces (/work/shared/traces) are not on this machine")
def test_gavel_full_seed0() -> None:
    res = import_trace("gavel", REAL)
    assert len(res.df) == 15264
    assert res.df["tenant"].nunique() == 15
    assert res.adjusted[FALLBACK] == 1548
    assert not res.skipped
