"""Crash safety of the local executor: a new instance over the same state directory
takes over the jobs of one that died (here: a control-plane process killed with
SIGKILL, so nothing was cleaned up)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gigafactory.executors import JobReport, LaunchRequest, LocalExecutor, ReportState

Final = Callable[..., JobReport]
Wait = Callable[..., Any]

# A stand-in control plane: launch jobs (optionally wait for a file, then cancel
# some), say "ready", and hang until it is killed.
CONTROL_PLANE = """
import json, os, sys, time
from gigafactory.executors import LaunchRequest, LocalExecutor
plan = json.loads(sys.argv[2])
ex = LocalExecutor(sys.argv[1])
for fields in plan["launch"]:
    ex.launch(LaunchRequest(**fields))
for path in plan.get("wait_for", []):
    while not os.path.exists(path):
        time.sleep(0.01)
for job_id in plan.get("cancel", []):
    ex.cancel(job_id, grace=plan["grace"])
print("ready", flush=True)
time.sleep(600)
"""


def crash_after(state: Path, plan: dict[str, Any]) -> None:
    """Run the stand-in control plane until it is ready, then SIGKILL it."""
    proc = subprocess.Popen(
        [sys.executable, "-c", CONTROL_PLANE, str(state), json.dumps(plan)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
    finally:
        proc.kill()
        proc.wait()


def fields(tmp_path: Path, job_id: str, code: str, *args: str, **extra: Any) -> dict[str, Any]:
    return {
        "job_id": job_id, "command": [sys.executable, "-c", code, *args],
        "devices": {"n0": [0]}, "env": {},
        "checkpoint_dir": str(tmp_path / "ck" / job_id),
        "log_path": str(tmp_path / "logs" / f"{job_id}.log"), **extra,
    }


@pytest.fixture
def recovered(tmp_path: Path, executors: list[LocalExecutor]) -> Callable[[], LocalExecutor]:
    def make() -> LocalExecutor:
        ex = LocalExecutor(tmp_path / "state")
        executors.append(ex)
        return ex

    return make


def test_new_instance_sees_and_cancels_a_job_of_a_crashed_one(
    tmp_path: Path, recovered: Callable[[], LocalExecutor], final_report: Final, wait: Wait,
    gone: Callable[[int], bool], ignore_term: str,
) -> None:
    ready = tmp_path / "ready.json"
    crash_after(tmp_path / "state", {
        "launch": [fields(tmp_path, "long", ignore_term, str(ready))],
        "wait_for": [str(ready)],
    })
    pid = json.loads(ready.read_text())["pid"]
    b = recovered()
    assert b.known_jobs() == {"long": "running"}
    assert b.poll() == [JobReport("long", ReportState.RUNNING)]
    b.cancel("long", grace=0.5)
    report = final_report(b, "long")
    assert (report.state, report.exit_code) == ("cancelled", -9)
    wait(lambda: gone(pid), "the job to be gone")


def test_a_pending_kill_deadline_survives_the_crash(
    tmp_path: Path, recovered: Callable[[], LocalExecutor], final_report: Final,
    ignore_term: str,
) -> None:
    ready = tmp_path / "ready.json"
    crash_after(tmp_path / "state", {
        "launch": [fields(tmp_path, "victim", ignore_term, str(ready))],
        "wait_for": [str(ready)], "cancel": ["victim"], "grace": 0.5,
    })
    b = recovered()  # nobody calls cancel again: b's timer finishes the escalation
    report = final_report(b, "victim")
    assert (report.state, report.exit_code) == ("cancelled", -9)


def test_a_job_that_finished_while_the_control_plane_was_down_is_reported(
    tmp_path: Path, recovered: Callable[[], LocalExecutor], final_report: Final,
) -> None:
    crash_after(tmp_path / "state", {
        "launch": [fields(tmp_path, "ok", "pass"), fields(tmp_path, "bad", "raise SystemExit(4)")],
    })
    b = recovered()
    assert final_report(b, "ok").exit_code == 0
    report = final_report(b, "bad")
    assert (report.state, report.exit_code) == ("failed", 4)


def test_a_delivered_report_is_delivered_again_if_not_yet_pruned(
    tmp_path: Path, recovered: Callable[[], LocalExecutor], final_report: Final,
) -> None:
    a = recovered()
    a.launch(LaunchRequest(**fields(tmp_path, "j", "pass")))
    assert final_report(a, "j").state == "completed"
    a.close()  # stops before the next poll, which would have forgotten the job
    b = recovered()
    assert b.known_jobs() == {"j": "completed"}
    assert b.poll() == [JobReport("j", ReportState.COMPLETED, 0, "exit code 0")]
    assert b.poll() == []
    assert b.known_jobs() == {}


def test_supervisor_killed_then_job_gone_is_lost(
    tmp_path: Path, recovered: Callable[[], LocalExecutor], final_report: Final, wait: Wait,
    ignore_term: str,
) -> None:
    ex = recovered()
    ready = tmp_path / "ready.json"
    ex.launch(LaunchRequest(**fields(tmp_path, "orphan", ignore_term, str(ready))))
    info = wait(lambda: ready.exists() and json.loads(ready.read_text()), "the job to start")
    os.kill(info["ppid"], signal.SIGKILL)  # its supervisor
    assert ex.known_jobs() == {"orphan": "running"}  # the job itself still runs
    ex.cancel("orphan", grace=0)  # and can still be stopped
    report = final_report(ex, "orphan")
    assert (report.state, report.exit_code) == ("lost", None)
    assert "ended without recording an exit status" in report.detail
