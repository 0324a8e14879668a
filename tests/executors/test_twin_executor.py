"""The twin executor: simulated jobs in accelerated time, driven by a fake clock
(no sleeps, fully deterministic)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gigafactory.executors import (
    Executor,
    ExecutorError,
    JobReport,
    LaunchRequest,
    ReportState,
    TwinExecutor,
    get_executor,
)
from gigafactory.executors.twin import CHECKPOINT_FILE, sim_clock


class FakeClock:
    """A clock that moves only when told to (real seconds)."""

    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def twins(tmp_path: Path, clock: FakeClock) -> Iterator[Callable[..., TwinExecutor]]:
    """``twins(state="state", **kwargs)``: twin executors on the fake clock, closed after."""
    made: list[TwinExecutor] = []

    def make(state: str = "state", **kwargs: Any) -> TwinExecutor:
        kwargs.setdefault("clock", clock)
        ex = TwinExecutor(tmp_path / state, **kwargs)
        made.append(ex)
        return ex

    yield make
    for ex in made:
        ex.close()


@pytest.fixture
def twin(twins: Callable[..., TwinExecutor]) -> TwinExecutor:
    return twins()


def req(tmp_path: Path, job_id: str, duration: float | None = 3600.0,
        interval: float | None = None, **fields: Any) -> LaunchRequest:
    env = dict(fields.pop("env", {}))
    if duration is not None:
        env["GIGAFACTORY_TWIN_DURATION"] = str(duration)
    if interval is not None:
        env["GIGAFACTORY_TWIN_CHECKPOINT_INTERVAL"] = str(interval)
    fields.setdefault("devices", {"n0": [0, 1, 2, 3]})
    return LaunchRequest(
        job_id, ["train.py"], env=env, checkpoint_dir=tmp_path / "ckpt" / job_id,
        log_path=tmp_path / "logs" / f"{job_id}.log", **fields,
    )


def checkpoint(tmp_path: Path, job_id: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((tmp_path / "ckpt" / job_id / CHECKPOINT_FILE).read_text())
    return data


def log_lines(tmp_path: Path, job_id: str) -> list[str]:
    return (tmp_path / "logs" / f"{job_id}.log").read_text().splitlines()


def test_protocol_and_registry(tmp_path: Path, clock: FakeClock) -> None:
    ex = get_executor("twin", state_dir=tmp_path / "state", clock=clock, speed=10.0)
    try:
        assert isinstance(ex, TwinExecutor)
        assert isinstance(ex, Executor)
        assert ex.name == "twin"
    finally:
        ex.close()
    with pytest.raises(ExecutorError, match=r"unknown executor 'slurmm'; valid executors: local, twin$"):
        get_executor("slurmm")


def test_completes_after_duration_over_speed_and_is_reported_once(
    twin: TwinExecutor, clock: FakeClock, tmp_path: Path
) -> None:
    twin.launch(req(tmp_path, "j1", duration=3600))  # one simulated hour at 60x: one real minute
    assert twin.poll() == [JobReport("j1", ReportState.RUNNING)]
    assert twin.poll() == []
    clock.advance(59.5)
    assert twin.poll() == []
    assert twin.known_jobs() == {"j1": "running"}
    clock.advance(0.5)
    assert twin.poll() == [JobReport("j1", ReportState.COMPLETED, 0, "exit code 0")]
    assert twin.known_jobs() == {"j1": "completed"}  # tracked until the next poll
    assert twin.poll() == []
    assert twin.known_jobs() == {}
    assert checkpoint(tmp_path, "j1") == {
        "job_id": "j1", "work_done": 3600.0, "duration": 3600.0, "restart_count": 0,
        "lost_work": 0.0}
    assert twin.now() == 3600.0


def test_default_duration_and_speed(twins: Callable[..., TwinExecutor], clock: FakeClock,
                                    tmp_path: Path) -> None:
    ex = twins(speed=100.0, default_duration=1000.0)
    ex.launch(req(tmp_path, "j1", duration=None))
    clock.advance(9.75)
    assert ex.known_jobs() == {"j1": "running"}
    clock.advance(0.25)
    assert ex.known_jobs() == {"j1": "completed"}


def test_periodic_checkpoints_and_progress_log(
    twins: Callable[..., TwinExecutor], clock: FakeClock, tmp_path: Path
) -> None:
    ex = twins(log_interval=600.0)
    ex.launch(req(tmp_path, "j1", duration=3600, interval=900, devices={"a": [0], "b": [0, 1]}))
    ex.poll()
    clock.advance(16.0)  # 960 simulated s
    ex.poll()
    assert checkpoint(tmp_path, "j1")["work_done"] == 900.0
    for _ in range(44):  # a poll per real second up to the end (3600 s)
        clock.advance(1.0)
        ex.poll()
    lines = log_lines(tmp_path, "j1")
    assert "job j1 attempt 1 (restart_count=0) on the twin executor at T+00:00:00 (60x)" in lines[0]
    assert "3600 s of work on 2 node(s) / 3 accelerator(s), starting at 0 s, " \
           "checkpoints every 900 s" in lines[0]
    progress = [line for line in lines[1:-1]]
    # at most one line per 600 simulated s: at 960, 1560, 2160, 2760, 3360 s
    assert [p.split("]")[0] for p in progress] == [
        "[twin T+00:16:00", "[twin T+00:26:00", "[twin T+00:36:00", "[twin T+00:46:00",
        "[twin T+00:56:00"]
    assert "job j1: 960 of 3600 s of work done (26.7%), last checkpoint at 900 s" in progress[0]
    assert "job j1 attempt 1 completed at T+01:00:00: exit code 0; 3600 of 3600 s" in lines[-1]


@pytest.mark.parametrize(
    ("grace", "exit_code", "detail", "resumed_at"),
    [
        (None, 143, "preempted: exit code 143 after SIGTERM", 1500.0),  # checkpoint on SIGTERM
        (0.0, -9, "preempted: killed by SIGKILL at the end of its 0 s grace period", 1200.0),
    ],
)
def test_preempt_then_relaunch_resumes_from_the_checkpoint(
    twin: TwinExecutor, clock: FakeClock, tmp_path: Path,
    grace: float | None, exit_code: int, detail: str, resumed_at: float,
) -> None:
    twin.launch(req(tmp_path, "j1", duration=3600, interval=600))
    clock.advance(25.0)  # 1500 simulated s of work; last periodic checkpoint at 1200
    twin.cancel("j1", grace=grace, preempt=True)
    assert twin.poll() == [JobReport("j1", ReportState.PREEMPTED, exit_code, detail)]
    lost = 1500.0 - resumed_at
    assert checkpoint(tmp_path, "j1") == {
        "job_id": "j1", "work_done": resumed_at, "duration": 3600.0, "restart_count": 0,
        "lost_work": lost}
    clock.advance(100.0)  # time passes while it waits in the queue
    twin.launch(req(tmp_path, "j1", duration=3600, interval=600, restart_count=1))
    remaining = (3600.0 - resumed_at) / 60.0
    clock.advance(remaining - 0.5)
    assert [r.state for r in twin.poll()] == ["running"]
    clock.advance(0.5)
    assert twin.poll() == [JobReport("j1", ReportState.COMPLETED, 0, "exit code 0")]
    final = checkpoint(tmp_path, "j1")
    assert (final["work_done"], final["restart_count"], final["lost_work"]) == (3600.0, 1, lost)
    lines = [line for line in log_lines(tmp_path, "j1") if line.startswith("===")]
    assert len(lines) == 4  # a header and an end line per attempt
    assert f"attempt 1 preempted at {sim_clock(1500)}: {detail}; 1500 of 3600 s" in lines[1]
    assert f"checkpoint at {resumed_at:g} s, {lost:g} s lost" in lines[1]
    assert f"attempt 2 (restart_count=1) on the twin executor at {sim_clock(7500)}" in lines[2]
    assert f"starting at {resumed_at:g} s" in lines[2]


def test_signal_is_a_sigterm_and_cancel_is_cancelled(twin: TwinExecutor, clock: FakeClock,
                                                     tmp_path: Path) -> None:
    twin.launch(req(tmp_path, "sig"))
    twin.launch(req(tmp_path, "can"))
    clock.advance(10.0)
    twin.signal("sig")
    twin.cancel("can")
    twin.cancel("can", grace=0, preempt=True)  # already ended: a no-op
    twin.signal("can")
    assert sorted(twin.poll(), key=lambda r: r.job_id) == [
        JobReport("can", ReportState.CANCELLED, 143, "cancelled: exit code 143 after SIGTERM"),
        JobReport("sig", ReportState.PREEMPTED, 143, "stopped on SIGTERM: exit code 143"),
    ]
    assert checkpoint(tmp_path, "can")["work_done"] == 600.0


def test_cancel_after_completion_is_a_no_op(twin: TwinExecutor, clock: FakeClock,
                                           tmp_path: Path) -> None:
    twin.launch(req(tmp_path, "j1", duration=60))
    clock.advance(5.0)
    twin.cancel("j1")  # finished (unpolled) 4 s ago
    assert twin.poll() == [JobReport("j1", ReportState.COMPLETED, 0, "exit code 0")]


def test_bad_requests_raise_executor_error(
    twins: Callable[..., TwinExecutor], twin: TwinExecutor, tmp_path: Path
) -> None:
    for call in (lambda: twin.cancel("nope"), lambda: twin.signal("nope")):
        with pytest.raises(ExecutorError, match=r"^twin executor: unknown job 'nope'$"):
            call()
    with pytest.raises(ExecutorError, match="env GIGAFACTORY_TWIN_DURATION must be a finite "
                                            "number of simulated seconds >= 0, got 'soon'"):
        twin.launch(req(tmp_path, "j1", env={"GIGAFACTORY_TWIN_DURATION": "soon"}, duration=None))
    with pytest.raises(ExecutorError, match="GIGAFACTORY_TWIN_CHECKPOINT_INTERVAL must be a "
                                            "finite number of simulated seconds > 0, got '0'"):
        twin.launch(req(tmp_path, "j1", interval=0))
    with pytest.raises(ExecutorError, match="expected a LaunchRequest, got dict"):
        twin.launch({"job_id": "j1"})  # type: ignore[arg-type]
    twin.launch(req(tmp_path, "j1"))
    with pytest.raises(ExecutorError, match="job j1: still running under this executor"):
        twin.launch(req(tmp_path, "j1"))
    with pytest.raises(ExecutorError, match="job j1: grace must be a finite number >= 0"):
        twin.cancel("j1", grace=-1)
    with pytest.raises(ExecutorError, match=r"state dir .* is in use by another executor"):
        twins()
    with pytest.raises(ExecutorError, match="speed must be a finite number > 0, got 0"):
        twins("other", speed=0)
    with pytest.raises(ExecutorError, match="mtbf_hours must be a finite number > 0, got -1"):
        twins("other", mtbf_hours=-1)
    twin.close()
    with pytest.raises(ExecutorError, match=r"^twin executor: used after close\(\)$"):
        twin.poll()


def run_failures(twins: Callable[..., TwinExecutor], clock: FakeClock, tmp_path: Path,
                 state: str, seed: int, jobs: int, nodes: int) -> list[tuple[str, float, float]]:
    """Launch ``jobs`` very long jobs, let them all fail; (detail, work at failure,
    checkpointed work) per job."""
    ex = twins(state, mtbf_hours=1.0, seed=seed)
    start = clock.t
    devices = {f"n{k}": [0] for k in range(nodes)}
    for i in range(jobs):
        ex.launch(req(tmp_path / state, f"j{i}", duration=1e9, interval=600, devices=devices))
    clock.advance(1e6)
    reports = {r.job_id: r for r in ex.poll()}
    clock.t = start
    ex.close()
    out = []
    for i in range(jobs):
        report = reports[f"j{i}"]
        assert (report.state, report.exit_code) == ("failed", None)
        ck = checkpoint(tmp_path / state, f"j{i}")
        out.append((report.detail, ck["work_done"] + ck["lost_work"], ck["work_done"]))
    return out


def test_failure_injection_is_seeded_and_scales_with_nodes(
    twins: Callable[..., TwinExecutor], clock: FakeClock, tmp_path: Path
) -> None:
    one = run_failures(twins, clock, tmp_path, "a", seed=7, jobs=200, nodes=1)
    again = run_failures(twins, clock, tmp_path, "b", seed=7, jobs=20, nodes=1)
    other = run_failures(twins, clock, tmp_path, "c", seed=8, jobs=20, nodes=1)
    four = run_failures(twins, clock, tmp_path, "d", seed=7, jobs=200, nodes=4)
    assert one[:20] == again
    assert [f for _, f, _ in other] != [f for _, f, _ in again]
    for detail, failed_at, saved in one + four:
        assert detail.startswith("simulated node failure on n")
        assert saved % 600 == 0 and 0 <= failed_at - saved < 600  # lost: since the last checkpoint
    mean_one = sum(f for _, f, _ in one) / len(one)
    mean_four = sum(f for _, f, _ in four) / len(four)
    assert 0.75 * 3600 < mean_one < 1.25 * 3600  # MTBF 1 h per node
    assert 0.75 * 900 < mean_four < 1.25 * 900  # four nodes fail four times as often
    assert {d.split()[4] for d, _, _ in four} == {"n0", "n1", "n2", "n3"}


def test_failed_job_relaunch_resumes_from_its_checkpoint(
    twins: Callable[..., TwinExecutor], clock: FakeClock, tmp_path: Path
) -> None:
    ex = twins(mtbf_hours=1.0, seed=3)
    ex.launch(req(tmp_path, "j1", duration=1e9, interval=600))
    clock.advance(1e6)
    [report] = ex.poll()
    assert report.state == "failed"
    ck = checkpoint(tmp_path, "j1")
    ex.launch(req(tmp_path, "j1", duration=1e9, interval=600, restart_count=1))
    assert f"starting at {ck['work_done']:g} s" in log_lines(tmp_path, "j1")[-1]
    assert f"{ck['lost_work']:g} s lost ===" in log_lines(tmp_path, "j1")[-2]


def test_new_instance_continues_jobs_and_redelivers_unpruned_reports(
    twins: Callable[..., TwinExecutor], clock: FakeClock, tmp_path: Path
) -> None:
    first = twins()
    first.launch(req(tmp_path, "short", duration=600))
    first.launch(req(tmp_path, "long", duration=3600))
    clock.advance(10.0)
    assert {r.job_id: r.state for r in first.poll()} == {"short": "completed", "long": "running"}
    first.close()  # "crash" before the report of "short" was stored
    clock.advance(20.0)
    second = twins()
    assert second.now() == 1800.0  # the same simulated timeline
    assert {r.job_id: r.state for r in second.poll()} == {"short": "completed", "long": "running"}
    assert second.poll() == []  # prunes "short"
    assert second.known_jobs() == {"long": "running"}
    clock.advance(30.0)
    assert second.poll() == [JobReport("long", ReportState.COMPLETED, 0, "exit code 0")]


def test_a_speed_change_keeps_the_timeline_continuous(
    twins: Callable[..., TwinExecutor], clock: FakeClock, tmp_path: Path
) -> None:
    first = twins()
    first.launch(req(tmp_path, "j1", duration=3600))
    clock.advance(30.0)
    first.close()
    faster = twins(speed=120.0)
    assert faster.now() == 1800.0
    clock.advance(14.5)
    assert faster.known_jobs() == {"j1": "running"}
    clock.advance(0.5)
    assert faster.known_jobs() == {"j1": "completed"}


CONTROL_PLANE = """
import json, sys, time
from pathlib import Path
from gigafactory.executors import LaunchRequest, TwinExecutor
clock = Path(sys.argv[2])
ex = TwinExecutor(sys.argv[1], clock=lambda: float(clock.read_text()))
for fields in json.loads(sys.argv[3]):
    ex.launch(LaunchRequest(**fields))
ex.cancel("stopped", preempt=True)
print("ready", flush=True)
time.sleep(600)
"""


def test_recovery_after_the_control_plane_is_killed(
    twins: Callable[..., TwinExecutor], clock: FakeClock, tmp_path: Path
) -> None:
    clock_file = tmp_path / "clock"
    clock_file.write_text(repr(clock.t))
    jobs = [
        {"job_id": job_id, "command": ["train"], "devices": {"n0": [0]},
         "env": {"GIGAFACTORY_TWIN_DURATION": "3600"},
         "checkpoint_dir": str(tmp_path / "ckpt" / job_id),
         "log_path": str(tmp_path / "logs" / f"{job_id}.log")}
        for job_id in ("running", "stopped", "cancel-me")
    ]
    proc = subprocess.Popen(
        [sys.executable, "-c", CONTROL_PLANE, str(tmp_path / "state"), str(clock_file),
         json.dumps(jobs)], stdout=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
    finally:
        proc.kill()
        proc.wait()
    clock.advance(30.0)
    ex = twins()
    assert ex.known_jobs() == {"running": "running", "stopped": "preempted",
                               "cancel-me": "running"}
    ex.cancel("cancel-me")
    assert {r.job_id: (r.state, r.exit_code) for r in ex.poll()} == {
        "running": ("running", None), "stopped": ("preempted", 143),
        "cancel-me": ("cancelled", 143)}
    assert checkpoint(tmp_path, "cancel-me")["work_done"] == 1800.0
    clock.advance(30.0)
    assert ex.poll() == [JobReport("running", ReportState.COMPLETED, 0, "exit code 0")]
    assert ex.known_jobs() == {"running": "completed"}


def test_a_clock_that_restarted_never_moves_the_timeline_back(
    twins: Callable[..., TwinExecutor], clock: FakeClock, tmp_path: Path
) -> None:
    first = twins()
    clock.advance(10.0)
    first.launch(req(tmp_path, "j1", duration=600))  # at 600 simulated s
    first.close()
    clock.t = 5.0  # a reboot: the monotonic clock starts again
    second = twins()
    assert second.now() == 600.0
    clock.advance(9.5)
    assert second.known_jobs() == {"j1": "running"}
    clock.advance(0.5)
    assert second.known_jobs() == {"j1": "completed"}


def test_an_unusable_checkpoint_means_starting_over(twin: TwinExecutor, clock: FakeClock,
                                                    tmp_path: Path) -> None:
    for job_id, content in (("other", {"job_id": "someone-else", "work_done": 500}),
                            ("torn", None), ("junk", {"job_id": "junk", "work_done": "x"})):
        path = tmp_path / "ckpt" / job_id / CHECKPOINT_FILE
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(content)[:-2] if content is None else json.dumps(content))
        twin.launch(req(tmp_path, job_id, duration=600, restart_count=1))
        assert "starting at 0 s, no periodic checkpoints ===" in log_lines(tmp_path, job_id)[0]
    clock.advance(10.0)
    assert {r.state for r in twin.poll()} == {"completed"}
