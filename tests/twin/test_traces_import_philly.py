"""Importer ``philly`` on a tiny cluster_job_log written in the public schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gigafactory.twin.traces import TraceError, import_trace

LOG = Path(__file__).parents[1] / "fixtures" / "traces" / "philly_cluster_job_log.json"


def test_philly_jobs_attempts_and_skips() -> None:
    res = import_trace("philly", LOG)
    df = res.df.set_index("job_id")
    assert res.skipped == {
        "no attempt (never started)": 1,
        "attempt without start or end time (running when the log ends)": 1,
    }
    assert len(df) == 4
    assert df["tenant"].value_counts().to_dict() == {"6214e9": 2, "b436b2": 1, "ee9e8c": 1}
    # Two attempts: 16 GPUs in the first (two machines x 8), 10 min + 30 min of run time.
    j = df.loc["application_1506638472019_10240"]
    assert j["gpus"] == 16
    assert j["duration"] == 600 + 1800
    # Earliest kept submit is 02:21:00; this one was submitted at 02:30:00.
    assert j["submit_time"] == 540.0
    assert (j["recorded_start"], j["recorded_end"]) == (1140.0, 4140.0)
    assert j["status"] == "failed"
    assert df.loc["application_1506638472019_10238", "status"] == "completed"
    assert df.loc["application_1506638472019_10242", "status"] == "killed"
    assert any("2017-10-03 02:21:00 UTC" in n for n in res.notes)


def _write(tmp_path: Path, jobs: object) -> Path:
    path = tmp_path / "cluster_job_log"
    path.write_text(json.dumps(jobs))
    return path


def test_philly_malformed_record_and_bad_date(tmp_path: Path) -> None:
    jobs = json.loads(LOG.read_text())
    del jobs[1]["vc"]
    jobs[3]["submitted_time"] = "yesterday"
    path = _write(tmp_path, jobs)
    with pytest.raises(TraceError) as exc:
        import_trace("philly", path)
    msg = str(exc.value)
    assert "cluster_job_log row 2: malformed job record" in msg
    assert "attempts list); row 4: submitted_time must be seconds or a date, got 'yesterday'" in msg
    assert "2 invalid rows in all" in msg
    res = import_trace("philly", path, skip_invalid=True)
    assert res.skipped["submitted_time must be seconds or a date"] == 1
    assert sum(v for k, v in res.skipped.items() if k.startswith("malformed")) == 1
    assert len(res.df) == 2


def test_philly_not_an_array(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="expected a JSON array of Philly jobs, got dict"):
        import_trace("philly", _write(tmp_path, {"jobs": []}))
    bad = tmp_path / "broken.json"
    bad.write_text("[{")
    with pytest.raises(TraceError, match="cannot read as JSON"):
        import_trace("philly", bad)
