"""The local executor with real subprocesses: lifecycle, environment, logs, stopping."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gigafactory.executors import (
    ExecutorError,
    JobReport,
    LaunchRequest,
    LocalExecutor,
    ReportState,
)

Req = Callable[..., LaunchRequest]
Final = Callable[..., JobReport]
Wait = Callable[..., Any]


def py(code: str, *args: str) -> list[str]:
    return [sys.executable, "-c", code, *args]


def test_lifecycle_running_then_completed_reported_once(
    executor: LocalExecutor, make_req: Req, final_report: Final, tmp_path: Path, wait: Wait
) -> None:
    go = tmp_path / "go"
    code = "import os, sys, time\nwhile not os.path.exists(sys.argv[1]): time.sleep(0.01)"
    executor.launch(make_req("j1", py(code, str(go))))
    assert executor.poll() == [JobReport("j1", ReportState.RUNNING)]
    assert executor.poll() == []  # no change, no report
    assert executor.known_jobs() == {"j1": "running"}
    go.touch()
    report = final_report(executor, "j1")
    assert (report.state, report.exit_code, report.detail) == ("completed", 0, "exit code 0")
    assert executor.known_jobs() == {"j1": "completed"}  # still tracked until the next poll
    assert executor.poll() == []
    assert executor.known_jobs() == {}


@pytest.mark.parametrize(
    ("command", "state", "exit_code", "detail"),
    [
        (py("import sys; sys.exit(3)"), "failed", 3, "exit code 3"),
        (py("import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"), "failed", -11,
         "killed by SIGSEGV"),
        (py("import sys; sys.exit(143)"), "preempted", 143, "stopped on SIGTERM: exit code 143"),
        (["/nonexistent/train"], "failed", 127, "cannot execute '/nonexistent/train'"),
    ],
)
def test_exit_status_maps_to_report(
    executor: LocalExecutor, make_req: Req, final_report: Final,
    command: list[str], state: str, exit_code: int, detail: str,
) -> None:
    executor.launch(make_req("j", command))
    report = final_report(executor, "j")
    assert (report.state, report.exit_code) == (state, exit_code)
    assert detail in report.detail


def test_job_sees_its_environment(
    executor: LocalExecutor, make_req: Req, final_report: Final, tmp_path: Path
) -> None:
    out = tmp_path / "env.json"
    names = ["GIGAFACTORY_JOB_ID", "CUDA_VISIBLE_DEVICES", "GIGAFACTORY_CHECKPOINT_DIR",
             "GIGAFACTORY_RESTART_COUNT", "GIGAFACTORY_DEVICES", "MY_SETTING"]
    code = ("import json, os, sys\n"
            f"json.dump({{k: os.environ.get(k) for k in {names!r}}}, open(sys.argv[1], 'w'))\n"
            "print('cwd=' + os.getcwd())")
    workdir = tmp_path / "work"
    workdir.mkdir()
    req = make_req(
        "train-7", py(code, str(out)), devices={"n3": [4, 5], "n4": [0, 1]},
        env={"MY_SETTING": "on", "CUDA_VISIBLE_DEVICES": "99"}, restart_count=2,
        checkpoint_dir=tmp_path / "ck" / "train-7", workdir=workdir,
    )
    executor.launch(req)
    assert final_report(executor, "train-7").state == "completed"
    env = json.loads(out.read_text())
    assert env == {
        "GIGAFACTORY_JOB_ID": "train-7",
        "CUDA_VISIBLE_DEVICES": "4,5,6,7",  # node n4 offset by stride 6 (largest id 5, plus 1)
        "GIGAFACTORY_CHECKPOINT_DIR": str(tmp_path / "ck" / "train-7"),
        "GIGAFACTORY_RESTART_COUNT": "2",
        "GIGAFACTORY_DEVICES": "n3:4,5;n4:0,1",
        "MY_SETTING": "on",
    }
    assert (tmp_path / "ck" / "train-7").is_dir()
    assert f"cwd={workdir}" in req.log_path.read_text()


def test_cuda_visible_devices_with_gpus_per_node(tmp_path: Path) -> None:
    with LocalExecutor(tmp_path / "s", gpus_per_node=8) as ex:
        assert ex.cuda_visible_devices({"n0": [0, 1], "n1": [0, 1]}) == "0,1,8,9"
        assert ex.cuda_visible_devices({"n0": [6, 7]}) == "6,7"
        assert ex.cuda_visible_devices({}) == ""
        with pytest.raises(ExecutorError, match=r"devices\['n0'\]: ids \[8\] exceed gpus_per_node=8"):
            ex.cuda_visible_devices({"n0": [8]})


def test_log_captures_stdout_stderr_and_appends_per_attempt(
    executor: LocalExecutor, make_req: Req, final_report: Final
) -> None:
    code = "import os, sys; print('out', os.environ['GIGAFACTORY_RESTART_COUNT']); print('err', file=sys.stderr)"
    for attempt in range(2):
        executor.launch(make_req("j", py(code), restart_count=attempt))
        assert final_report(executor, "j").state == "completed"
    lines = make_req("j").log_path.read_text().splitlines()
    headers = [line for line in lines if "attempt" in line]
    assert len(headers) == 2
    assert "job j attempt 1 (restart_count=0)" in headers[0]
    assert "job j attempt 2 (restart_count=1)" in headers[1]
    assert [line for line in lines if not line.startswith("===")] == ["out 0", "err", "out 1", "err"]
    assert sum("job ended: exit code 0" in line for line in lines) == 2


def test_cancel_kills_a_job_that_ignores_sigterm_and_its_children(
    executor: LocalExecutor, make_req: Req, final_report: Final, tmp_path: Path, wait: Wait,
    gone: Callable[[int], bool], ignore_term: str,
) -> None:
    ready = tmp_path / "ready.json"
    # The job starts a grandchild that also ignores SIGTERM, then ignores it itself.
    code = ("import subprocess, sys\n"
            f"subprocess.Popen([sys.executable, '-c', {ignore_term!r}, sys.argv[1] + '.gc'])\n"
            + ignore_term)
    executor.launch(make_req("stubborn", py(code, str(ready)), grace_period=30))
    pid = wait(lambda: ready.exists() and json.loads(ready.read_text())["pid"], "the job")
    gc_file = Path(f"{ready}.gc")
    grandchild = wait(lambda: gc_file.exists() and json.loads(gc_file.read_text())["pid"], "grandchild")
    executor.cancel("stubborn", grace=0.5)
    report = final_report(executor, "stubborn")
    assert report.state == "cancelled"
    assert report.exit_code == -9
    assert "SIGKILL at the end of its 0.5 s grace period" in report.detail
    wait(lambda: gone(pid) and gone(grandchild), "job and grandchild to be gone")


def test_cancel_of_a_cooperative_job_and_preempt(
    executor: LocalExecutor, make_req: Req, final_report: Final, tmp_path: Path, wait: Wait
) -> None:
    code = ("import pathlib, signal, sys, time\n"
            "signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\n"
            "pathlib.Path(sys.argv[1]).touch()\n"
            "time.sleep(120)")
    for job_id, preempt, state in (("c", False, "cancelled"), ("p", True, "preempted")):
        ready = tmp_path / f"{job_id}.ready"
        executor.launch(make_req(job_id, py(code, str(ready))))
        wait(ready.exists, f"{job_id} to start")
        executor.cancel(job_id, grace=30, preempt=preempt)
        report = final_report(executor, job_id)
        # Exits 0 on SIGTERM, but the executor stopped it: intent wins over exit status.
        assert (report.state, report.exit_code) == (state, 0)
        assert report.detail == f"{state}: exit code 0 after SIGTERM"


def test_signal_asks_the_job_to_stop(
    executor: LocalExecutor, make_req: Req, final_report: Final, tmp_path: Path, wait: Wait
) -> None:
    ready = tmp_path / "ready"
    code = ("import pathlib, signal, sys, time\n"
            "signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))\n"
            "pathlib.Path(sys.argv[1]).touch()\n"
            "time.sleep(120)")
    executor.launch(make_req("s", py(code, str(ready))))
    wait(ready.exists, "the job to start")
    executor.signal("s")
    report = final_report(executor, "s")
    assert (report.state, report.exit_code) == ("preempted", 143)


def test_cancel_after_the_job_ended_is_a_no_op(
    executor: LocalExecutor, make_req: Req, final_report: Final
) -> None:
    executor.launch(make_req("quick"))
    assert final_report(executor, "quick").state == "completed"
    executor.cancel("quick", grace=0)
    executor.signal("quick")
    assert executor.poll() == []


def test_bad_requests_raise_executor_error(
    executor: LocalExecutor, make_req: Req, tmp_path: Path
) -> None:
    with pytest.raises(ExecutorError, match="unknown job 'nope'"):
        executor.cancel("nope")
    with pytest.raises(ExecutorError, match="unknown job 'nope'"):
        executor.signal("nope")
    with pytest.raises(ExecutorError, match=r"job w: workdir .*missing is not a directory"):
        executor.launch(make_req("w", workdir=tmp_path / "missing"))
    with pytest.raises(ExecutorError, match="expected a LaunchRequest, got dict"):
        executor.launch({"job_id": "x"})  # type: ignore[arg-type]
    executor.launch(make_req("long", py("import time; time.sleep(120)")))
    with pytest.raises(ExecutorError, match="job long: still running under this executor"):
        executor.launch(make_req("long"))
    with pytest.raises(ExecutorError, match="grace must be a finite number >= 0, got -1"):
        executor.cancel("long", grace=-1)
    assert executor.known_jobs() == {"long": "running"}


def test_state_dir_is_used_by_one_executor_at_a_time(tmp_path: Path) -> None:
    first = LocalExecutor(tmp_path / "state")
    with pytest.raises(ExecutorError, match=r"state dir .* is in use by another executor"):
        LocalExecutor(tmp_path / "state")
    first.close()
    LocalExecutor(tmp_path / "state").close()
    with pytest.raises(ExecutorError, match="used after close"):
        first.poll()


def test_launch_and_poll_from_several_threads(
    executor: LocalExecutor, make_req: Req, wait: Wait
) -> None:
    errors: list[BaseException] = []
    reports: list[JobReport] = []  # list.extend is atomic: workers may share it

    def work(worker: int) -> None:
        try:
            for i in range(3):
                executor.launch(make_req(f"w{worker}-{i}", py(f"raise SystemExit({i})")))
                reports.extend(executor.poll())
                executor.known_jobs()
        except BaseException as exc:  # reported below, in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []

    def all_ended() -> bool:
        reports.extend(executor.poll())
        return sum(r.state.terminal for r in reports) >= 12

    wait(all_ended, "12 final reports")
    final = [(r.job_id, r.exit_code) for r in reports if r.state.terminal]
    expected = [(f"w{w}-{i}", i) for w in range(4) for i in range(3)]
    assert sorted(final) == sorted(expected)  # each job ended once, with its own status
