"""The ``twin`` executor: jobs are simulated in accelerated time, so a demo of the
control plane shows a live facility of any size without running anything.

**Time.** Simulated time is ``sim0 + (clock() - real0) * speed`` seconds, with
``sim0 = 0`` and ``real0`` the first clock reading over a state directory, both kept
in ``STATE_DIR/clock.json``: a new instance continues the same timeline (with the
default ``time.monotonic``: until a reboot). An instance with another ``speed``, or
whose clock reads before ``real0``, rebases it so simulated time never jumps back.

**Jobs.** A job does ``$GIGAFACTORY_TWIN_DURATION`` simulated seconds of work (else
``default_duration``) and, with ``$GIGAFACTORY_TWIN_CHECKPOINT_INTERVAL``, checkpoints
whenever its work reaches a multiple of the interval. Its checkpoint is
``checkpoint_dir/twin-checkpoint.json``, written atomically: ``job_id``, ``work_done``
(at the last checkpoint), ``duration``, ``restart_count``, ``lost_work`` (all
attempts). Any attempt resumes from it if it names the same job, as a real job would.

**Ends**, reported by the rules of :mod:`.base` like the local executor:

* SIGTERM (:meth:`~TwinExecutor.signal`; :meth:`~TwinExecutor.cancel` with a grace
  period > 0): the job checkpoints at that instant, taking no simulated time, and
  exits 143, so it always beats its SIGKILL deadline and the report comes at the
  next poll: ``preempted`` (signal, ``preempt=True``) or ``cancelled``; nothing lost.
* ``cancel(..., grace=0)``: SIGKILL comes with the SIGTERM and the job cannot
  checkpoint: "killed by SIGKILL"; the work since its last checkpoint is lost.
* natural end: ``completed``, exit code 0.
* with ``mtbf_hours``: each attempt draws a failure time, exponential with mean
  ``mtbf_hours * 3600 / nodes`` simulated seconds (``nodes = len(req.devices)``, at
  least 1), and the node hit, from ``numpy.random.default_rng([seed, hash of the
  job id, restart_count])``: reproducible whatever the launch order, the clock
  readings or executor restarts. A failure before the end is ``failed`` (exit code
  unknown, detail "simulated node failure on NODE at T+..."); the work since the
  last checkpoint is lost.

**Logs** (``req.log_path``): a header per attempt, a progress line per running job at
most every ``log_interval`` simulated seconds (written by :meth:`~TwinExecutor.poll`)
and an end line with the outcome and the work lost.

**Crash safety.** ``STATE_DIR/jobs/*.json`` holds one small file per job (launch time,
work, failure draw, how it ended), so a new instance over the same state directory
continues the jobs. Reports follow the local executor: each state once per instance,
a terminal job forgotten at the poll after the one that reported it (at least once
across crashes), every job reported by the first poll of a new instance. One
instance per state directory (a lock file).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gigafactory.executors._supervisor import read_json, write_json_atomic
from gigafactory.executors.base import (
    PREEMPTED_EXIT_CODE,
    ExecutorError,
    JobReport,
    LaunchRequest,
    ReportState,
    classify_exit,
)
from gigafactory.executors.statedir import StateDirExecutor, acquire_state_lock, dir_name

DURATION_ENV = "GIGAFACTORY_TWIN_DURATION"
INTERVAL_ENV = "GIGAFACTORY_TWIN_CHECKPOINT_INTERVAL"
CHECKPOINT_FILE = "twin-checkpoint.json"
CLOCK_FILE = "clock.json"
FAILURE_DETAIL = "simulated node failure"


def sim_clock(t: float) -> str:
    """A simulated time as ``T+[Nd ]HH:MM:SS``."""
    days, rest = divmod(int(t), 86400)
    return f"T+{f'{days}d ' if days else ''}{rest // 3600:02d}:{rest // 60 % 60:02d}:{rest % 60:02d}"


@dataclass
class _Job:
    """One attempt of a job; every field but the last three is persisted."""

    job_id: str
    restart_count: int
    grace_period: float
    duration: float
    interval: float | None
    nodes: list[str]
    gpus: int
    log_path: str
    checkpoint_dir: str
    start: float  # simulated time of the launch
    base: float  # work done when it started (resumed from the checkpoint)
    lost_before: float  # work lost by earlier attempts
    fail_at: float | None = None  # simulated time of its node failure, if one was drawn
    fail_node: str = ""
    state: ReportState = ReportState.RUNNING
    exit_code: int | None = None
    detail: str = ""
    saved: float = 0.0  # work in the checkpoint file
    logged: float = 0.0  # simulated time of the last progress line
    reported: ReportState | None = None

    def work_at(self, t: float) -> float:
        return min(self.duration, self.base + max(0.0, t - self.start))

    def checkpoint_of(self, work: float) -> float:
        """Work in the last checkpoint taken by the time ``work`` is done."""
        if work >= self.duration:
            return self.duration
        if self.interval is None:
            return self.base
        return max(self.base, math.floor(work / self.interval) * self.interval)

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k not in ("saved", "logged", "reported")}


class TwinExecutor(StateDirExecutor):
    """Simulate jobs on a virtual facility in accelerated time (see the module doc).

    ``speed`` simulated seconds pass per second of ``clock``; ``default_duration``
    is the work of a job without ``$GIGAFACTORY_TWIN_DURATION``; ``mtbf_hours``
    (per node, ``None``: no failures) and ``seed`` drive failure injection;
    ``log_interval`` is the least simulated time between two progress lines.
    """

    name = "twin"

    WHO = "twin executor"

    def __init__(
        self,
        state_dir: Path | str,
        *,
        speed: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        default_duration: float = 600.0,
        mtbf_hours: float | None = None,
        seed: int = 0,
        log_interval: float = 600.0,
    ) -> None:
        for what, value, least in (("speed", speed, ">"), ("mtbf_hours", mtbf_hours, ">"),
                                   ("log_interval", log_interval, ">"),
                                   ("default_duration", default_duration, ">=")):
            if value is not None and not _number_ok(value, least):
                raise ExecutorError(f"twin executor: {what} must be a finite number {least} 0, "
                                    f"got {value!r}")
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise ExecutorError(f"twin executor: seed must be an integer >= 0, got {seed!r}")
        self.state_dir = Path(state_dir).absolute()
        self._jobs_dir = self.state_dir / "jobs"
        try:
            self._jobs_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ExecutorError(f"twin executor: cannot create state dir {state_dir}: {exc}") from None
        self.speed, self._clock, self._seed = float(speed), clock, seed
        self._default_duration, self._mtbf = float(default_duration), mtbf_hours
        self._log_interval = float(log_interval)
        self._lock_fh = acquire_state_lock(self.state_dir, self.WHO)
        self._lock = threading.RLock()
        self._jobs: dict[str, _Job] = {}
        self._to_prune: list[str] = []
        self._closed = False
        self._recover()

    # ------------------------------------------------------------------ public API

    def now(self) -> float:
        """The current simulated time, in seconds."""
        return self._sim0 + (self._clock() - self._real0) * self.speed

    def launch(self, req: LaunchRequest) -> None:
        """Start a simulated attempt of ``req``; it resumes from its checkpoint, if any.
        Relaunching an ended job replaces it (its unpolled final report is dropped)."""
        if not isinstance(req, LaunchRequest):
            raise ExecutorError(f"twin executor: expected a LaunchRequest, got {type(req).__name__}")
        duration = _env_seconds(req, DURATION_ENV, ">=")
        duration = self._default_duration if duration is None else duration
        interval = _env_seconds(req, INTERVAL_ENV, ">")
        with self._lock:
            self._check_open()
            now = self.now()
            old = self._jobs.get(req.job_id)
            if old is not None:
                self._refresh(old, now)
                if not old.state.terminal:
                    raise ExecutorError(
                        f"job {req.job_id}: still running under this executor; "
                        "cancel it and wait for its report before relaunching"
                    )
                self._forget(old)
            try:
                req.checkpoint_dir.mkdir(parents=True, exist_ok=True)
                req.log_path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ExecutorError(f"job {req.job_id}: cannot create {exc.filename}: "
                                    f"{exc.strerror}") from None
            base, lost = _read_checkpoint(req)
            base = min(base, duration)
            job = _Job(
                req.job_id, req.restart_count, req.grace_period, duration, interval,
                list(req.devices), sum(len(ids) for ids in req.devices.values()),
                str(req.log_path.absolute()), str(req.checkpoint_dir.absolute()), now, base,
                lost, saved=base, logged=now,
            )
            if self._mtbf is not None:
                self._draw_failure(job)
            every = f"checkpoints every {interval:g} s" if interval else "no periodic checkpoints"
            self._log(job, f"=== gigafactory {_stamp()}: job {job.job_id} attempt "
                           f"{job.restart_count + 1} (restart_count={job.restart_count}) on the "
                           f"twin executor at {sim_clock(now)} ({self.speed:g}x): "
                           f"{duration:g} s of work on {len(job.nodes)} node(s) / {job.gpus} "
                           f"accelerator(s), starting at {base:g} s, {every} ===")
            self._save(job)
            self._jobs[job.job_id] = job

    def signal(self, job_id: str) -> None:
        """SIGTERM: the job checkpoints now and ends ``preempted`` (exit code 143)."""
        with self._lock:
            job = self._live(job_id)
            if job is not None:
                self._stop(job, self.now(), None, killed=False)

    def cancel(self, job_id: str, *, grace: float | None = None, preempt: bool = False) -> None:
        """Stop the job now: it checkpoints and exits 143 (``grace`` > 0, default: the
        job's grace period) or is killed without a checkpoint (``grace=0``). It ends
        ``preempted`` with ``preempt=True``, else ``cancelled``. No-op once ended."""
        if grace is not None and not 0 <= grace < math.inf:
            raise ExecutorError(f"job {job_id}: grace must be a finite number >= 0, got {grace!r}")
        with self._lock:
            job = self._live(job_id)
            if job is not None:
                wait = job.grace_period if grace is None else float(grace)
                self._stop(job, self.now(), "preempt" if preempt else "cancel", killed=wait <= 0)

    def poll(self) -> list[JobReport]:
        """State changes since the last poll; writes due progress lines to the logs."""
        with self._lock:
            self._check_open()
            for job_id in self._to_prune:
                job = self._jobs.get(job_id)
                if job is not None and job.state.terminal and job.reported == job.state:
                    self._forget(job)
            self._to_prune = []
            now = self.now()
            reports: list[JobReport] = []
            for job in self._jobs.values():
                self._refresh(job, now)
                if not job.state.terminal and now - job.logged >= self._log_interval:
                    work = job.work_at(now)
                    self._log(job, f"[twin {sim_clock(now)}] job {job.job_id}: {work:.0f} of "
                                   f"{job.duration:g} s of work done ({100 * work / job.duration:.1f}%), "
                                   f"last checkpoint at {job.saved:.0f} s")
                    job.logged = now
                if job.reported != job.state:
                    reports.append(JobReport(job.job_id, job.state, job.exit_code, job.detail))
                    job.reported = job.state
                if job.state.terminal:
                    self._to_prune.append(job.job_id)
            return reports

    def known_jobs(self) -> dict[str, str]:
        """Every job this executor tracks, with its current state."""
        with self._lock:
            self._check_open()
            now = self.now()
            for job in self._jobs.values():
                self._refresh(job, now)
            return {job_id: str(job.state) for job_id, job in self._jobs.items()}

    def close(self) -> None:
        """Release the state directory. Simulated jobs "keep running": simulated time
        goes on, and a new instance over the same state directory continues them."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._lock_fh.close()

    # ------------------------------------------------------------------ simulation

    def _draw_failure(self, job: _Job) -> None:
        """When (and on which node) this attempt's placement fails, if before its end."""
        assert self._mtbf is not None
        key = int.from_bytes(hashlib.sha256(job.job_id.encode()).digest()[:8], "big")
        rng = np.random.default_rng([self._seed, key, job.restart_count])
        nodes = max(1, len(job.nodes))
        job.fail_at = job.start + float(rng.exponential(self._mtbf * 3600.0 / nodes))
        job.fail_node = job.nodes[int(rng.integers(nodes))] if job.nodes else "its node"

    def _refresh(self, job: _Job, now: float) -> None:
        """End the job if it finished or failed by ``now``; else record checkpoints."""
        if job.state.terminal:
            return
        done_at = job.start + max(0.0, job.duration - job.base)
        if job.fail_at is not None and job.fail_at < done_at and job.fail_at <= now:
            work = job.work_at(job.fail_at)
            self._end(job, job.fail_at, ReportState.FAILED, None,
                      f"{FAILURE_DETAIL} on {job.fail_node} at {sim_clock(job.fail_at)}",
                      job.checkpoint_of(work))
        elif done_at <= now:
            state, detail = classify_exit(0)
            self._end(job, done_at, state, 0, detail, job.duration)
        elif (saved := job.checkpoint_of(job.work_at(now))) > job.saved:
            self._write_checkpoint(job, saved, job.lost_before, durable=False)

    def _stop(self, job: _Job, now: float, stop: str | None, *, killed: bool) -> None:
        """SIGTERM (and SIGKILL with it if ``killed``) at ``now``, by the base rules."""
        self._refresh(job, now)
        if job.state.terminal:
            return
        work = job.work_at(now)
        code = -signal.SIGKILL if killed else PREEMPTED_EXIT_CODE
        state, detail = classify_exit(code, stop=stop, killed_after=0.0 if killed else None)
        self._end(job, now, state, code, detail, job.checkpoint_of(work) if killed else work)

    def _end(self, job: _Job, t: float, state: ReportState, code: int | None, detail: str,
             saved: float) -> None:
        """Record the end at simulated time ``t``: checkpoint file, log line, state file."""
        work = job.work_at(t)
        lost = job.lost_before + work - saved
        self._write_checkpoint(job, saved, lost)
        job.state, job.exit_code, job.detail = state, code, detail
        self._log(job, f"=== gigafactory {_stamp()}: job {job.job_id} attempt "
                       f"{job.restart_count + 1} {state} at {sim_clock(t)}: {detail}; "
                       f"{work:g} of {job.duration:g} s of work done, checkpoint at {saved:g} s, "
                       f"{work - saved:g} s lost ===")
        self._save(job)

    def _write_checkpoint(self, job: _Job, saved: float, lost: float, *,
                          durable: bool = True) -> None:
        """Replace the checkpoint file. Periodic ones skip the fsync (they can be
        derived again from the state file): thousands of jobs poll cheaply."""
        path = Path(job.checkpoint_dir) / CHECKPOINT_FILE
        data = {"job_id": job.job_id, "work_done": saved, "duration": job.duration,
                "restart_count": job.restart_count, "lost_work": lost}
        if durable:
            write_json_atomic(path, data)
        else:
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_text(json.dumps(data), encoding="utf-8")
            os.replace(tmp, path)
        job.saved = saved

    # ------------------------------------------------------------------ persistence

    def _recover(self) -> None:
        """Load the timeline and every job left in the state directory."""
        for path in sorted(self._jobs_dir.glob("*.json")):
            data = read_json(path)
            try:
                job = _Job(**(data or {}))
                job.state = ReportState(job.state)
            except (TypeError, ValueError):
                path.unlink(missing_ok=True)  # a torn or foreign file: not a job we can run
                continue
            job.saved, job.logged = job.checkpoint_of(job.base), job.start
            self._jobs[job.job_id] = job
        real, clock = self._clock(), read_json(self.state_dir / CLOCK_FILE) or {}
        try:
            self._real0, self._sim0 = float(clock["real0"]), float(clock["sim0"])
            old_speed = float(clock["speed"])
        except (KeyError, TypeError, ValueError):
            self._real0, self._sim0, old_speed = real, 0.0, self.speed
        if real < self._real0:  # the clock restarted (a reboot): go on from the last known time
            self._sim0 = max([self._sim0, *(j.start for j in self._jobs.values())])
            self._real0 = real
        elif old_speed != self.speed:
            self._sim0 += (real - self._real0) * old_speed
            self._real0 = real
        write_json_atomic(self.state_dir / CLOCK_FILE,
                          {"real0": self._real0, "sim0": self._sim0, "speed": self.speed})

    def _save(self, job: _Job) -> None:
        write_json_atomic(self._jobs_dir / f"{dir_name(job.job_id)}.json", job.to_json())

    def _forget(self, job: _Job) -> None:
        (self._jobs_dir / f"{dir_name(job.job_id)}.json").unlink(missing_ok=True)
        self._jobs.pop(job.job_id, None)

    def _log(self, job: _Job, line: str) -> None:
        try:
            with open(job.log_path, "a", encoding="utf-8") as fh:
                fh.write(line + "\n")
        except OSError:
            pass  # a log that cannot be written must not stop the simulation

    def _live(self, job_id: str) -> _Job | None:
        """The job (``None`` if it has ended); :class:`ExecutorError` if unknown."""
        self._check_open()
        job = self._jobs.get(job_id)
        if job is None:
            raise ExecutorError(f"twin executor: unknown job {job_id!r}")
        self._refresh(job, self.now())
        return None if job.state.terminal else job


def _number_ok(value: object, least: str) -> bool:
    """``value`` is a finite real number ``> 0`` (``least=">"``) or ``>= 0``."""
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value) and (value > 0 if least == ">" else value >= 0))


def _env_seconds(req: LaunchRequest, key: str, least: str) -> float | None:
    """The number of simulated seconds in ``req.env[key]`` (``None`` if unset)."""
    raw = req.env.get(key)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not _number_ok(value, least):
        raise ExecutorError(f"job {req.job_id}: env {key} must be a finite number of "
                            f"simulated seconds {least} 0, got {raw!r}")
    return value


def _read_checkpoint(req: LaunchRequest) -> tuple[float, float]:
    """(work done, work lost so far) from the job's checkpoint file; zeros if it is
    missing, unreadable or another job's (a job without a usable checkpoint starts over)."""
    ckpt = read_json(req.checkpoint_dir / CHECKPOINT_FILE) or {}
    if ckpt.get("job_id") != req.job_id:
        return 0.0, 0.0
    try:
        work, lost = float(ckpt.get("work_done", 0.0)), float(ckpt.get("lost_work", 0.0))
    except (TypeError, ValueError):
        return 0.0, 0.0
    return (work, lost) if _number_ok(work, ">=") and _number_ok(lost, ">=") else (0.0, 0.0)


def _stamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
