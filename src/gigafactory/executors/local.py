"""The ``local`` executor: every job is a process tree on this machine.

Each attempt of a job runs under a tiny supervisor (:mod:`._supervisor`) that
starts the command in its own session/process group and records the exit
status in a file, so the executor survives its own crash: all it knows lives in
``STATE_DIR/jobs/<job>/`` and a new :class:`LocalExecutor` over the same state
directory picks the jobs up again (:meth:`LocalExecutor.known_jobs`, :meth:`poll`,
:meth:`cancel`).

Per job directory:

* ``job.json``  what was launched (written by the executor before the start);
* ``proc.json`` pid and ``/proc`` start time of the supervisor and of the job's
  process-group leader (written by the supervisor; start times detect pid reuse);
* ``stop.json`` a pending cancel/preempt: its kind and SIGKILL deadline;
* ``exit.json`` the exit status (written by the supervisor when the job ends).

Environment of a job: the executor's environment (or ``base_env``), then
``LaunchRequest.env``, then the executor's own variables, which win:

* ``GIGAFACTORY_JOB_ID``, ``GIGAFACTORY_RESTART_COUNT``;
* ``GIGAFACTORY_CHECKPOINT_DIR`` (absolute, created if missing);
* ``GIGAFACTORY_DEVICES``: the placement, ``node:id,id;node:id`` in request order;
* ``CUDA_VISIBLE_DEVICES``: the virtual accelerator ids, comma-separated. One
  machine has one id space, so for a multi-node placement the ids of the k-th
  node (request order, k from 0) are offset by ``k * stride``, where ``stride``
  is ``gpus_per_node`` given to the constructor, or else one more than the
  largest id in the request. Example: ``{"n0": [0, 1], "n1": [0, 1]}`` gives
  ``0,1,8,9`` with ``gpus_per_node=8`` and ``0,1,2,3`` without.

Output: stdout and stderr of the job are appended to ``log_path``, after a
header line per attempt (so one log shows the whole history of a job), and the
supervisor appends an end line with the exit status.

Stopping: :meth:`LocalExecutor.cancel` sends SIGTERM to the job's process group
and returns; a background thread (sleeping on a condition until the earliest
deadline, no busy waiting) sends SIGKILL when the grace period is over. Pending
deadlines are persisted, so a recovered executor finishes the escalation.

Reports are delivered once per executor instance; a terminal job is forgotten
(its state directory removed) at the poll *after* the one that reported it, so
after a crash of the control plane a report it may not have stored yet is
delivered again (at least once): handle repeated terminal reports idempotently.
The first poll of a new instance reports every job it found.

Linux only for crash recovery (``/proc``); the state directory may be used by
one executor instance at a time (enforced with a lock file).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from signal import Signals
from typing import Any

from gigafactory.executors._supervisor import (
    EXIT_FILE,
    proc_stat,
    process_alive,
    read_json,
    write_json_atomic,
)
from gigafactory.executors.base import (
    ExecutorError,
    JobReport,
    LaunchRequest,
    ReportState,
    classify_exit,
)
from gigafactory.executors.local_records import JOB_FILE, STOP_FILE, JobRecord
from gigafactory.executors.statedir import StateDirExecutor, acquire_state_lock, dir_name

_SUPERVISOR = Path(__file__).with_name("_supervisor.py")
class LocalExecutor(StateDirExecutor):
    """Run jobs as supervised process trees on this machine (see the module doc).

    ``state_dir`` holds the per-job state files (created if missing).
    ``gpus_per_node`` is the id stride between nodes in ``CUDA_VISIBLE_DEVICES``.
    ``base_env`` replaces ``os.environ`` as the environment jobs start from.
    ``python`` runs the supervisor (default: this interpreter).
    ``start_timeout`` bounds how long :meth:`launch` waits for the supervisor's
    handshake (normally a few tens of milliseconds).
    """

    name = "local"

    WHO = "local executor"

    def __init__(
        self,
        state_dir: Path | str,
        *,
        gpus_per_node: int | None = None,
        base_env: Mapping[str, str] | None = None,
        python: str | None = None,
        start_timeout: float = 30.0,
    ) -> None:
        if gpus_per_node is not None and gpus_per_node < 1:
            raise ExecutorError(f"local executor: gpus_per_node must be >= 1, got {gpus_per_node}")
        self.state_dir = Path(state_dir).absolute()
        self._jobs_dir = self.state_dir / "jobs"
        try:
            self._jobs_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ExecutorError(f"local executor: cannot create state dir {state_dir}: {exc}") from None
        self._gpus_per_node = gpus_per_node
        self._base_env = dict(base_env) if base_env is not None else None
        self._python = python or sys.executable
        self._start_timeout = start_timeout
        self._lock_fh = acquire_state_lock(self.state_dir, self.WHO)
        self._cond = threading.Condition(threading.RLock())
        self._jobs: dict[str, JobRecord] = {}
        self._to_prune: list[str] = []
        self._closed = False
        self._killer: threading.Thread | None = None
        self._recover()

    # ------------------------------------------------------------------ public API

    def launch(self, req: LaunchRequest) -> None:
        """Start one attempt of ``req`` (see :class:`~.base.Executor`).

        Relaunching a job id whose previous attempt has ended replaces that attempt
        (an unpolled final report of it is dropped: the caller knows it ended).
        Blocks only for the supervisor's start handshake (tens of milliseconds).
        """
        if not isinstance(req, LaunchRequest):
            raise ExecutorError(f"local executor: expected a LaunchRequest, got {type(req).__name__}")
        with self._cond:
            self._check_open()
            old = self._jobs.get(req.job_id)
            if old is not None:
                self._refresh(old)
                if not old.state.terminal:
                    raise ExecutorError(
                        f"job {req.job_id}: still running under this executor; "
                        "cancel it and wait for its report before relaunching"
                    )
                self._forget(old)
            self._jobs[req.job_id] = self._start(req)

    def signal(self, job_id: str) -> None:
        """SIGTERM to the job's process group; no kill deadline."""
        with self._cond:
            self._check_open()
            job = self._get(job_id)
            self._refresh(job)
            if not job.state.terminal:
                self._signal_group(job, signal.SIGTERM)

    def cancel(self, job_id: str, *, grace: float | None = None, preempt: bool = False) -> None:
        """SIGTERM now, SIGKILL after ``grace`` s (default: the job's grace period).

        A second call can shorten the deadline (``grace=0`` kills at once) and turn
        a preemption into a cancellation, never the other way round.
        """
        if grace is not None and not (grace >= 0 and grace < float("inf")):
            raise ExecutorError(f"job {job_id}: grace must be a finite number >= 0, got {grace!r}")
        with self._cond:
            self._check_open()
            job = self._get(job_id)
            self._refresh(job)
            if job.state.terminal:
                return
            wait = job.grace_period if grace is None else float(grace)
            deadline = time.time() + wait
            first = job.stop is None
            if first or not preempt:
                job.stop = "preempt" if preempt else "cancel"
            if job.deadline is None or deadline < job.deadline:
                job.deadline, job.grace_used = deadline, wait
            job.save_stop()
            if first:
                self._signal_group(job, signal.SIGTERM)
            if wait <= 0:
                self._escalate(time.time())
            self._ensure_killer()
            self._cond.notify_all()

    def poll(self) -> list[JobReport]:
        """State changes since the last poll; never waits for a job."""
        with self._cond:
            self._check_open()
            for job_id in self._to_prune:
                job = self._jobs.get(job_id)
                if job is not None and job.state.terminal and job.reported == job.state:
                    self._forget(job)
            self._to_prune = []
            self._escalate(time.time())
            reports: list[JobReport] = []
            for job in self._jobs.values():
                self._refresh(job)
                if job.reported != job.state:
                    reports.append(JobReport(job.job_id, job.state, job.exit_code, job.detail))
                    job.reported = job.state
                if job.state.terminal:
                    self._to_prune.append(job.job_id)
            return reports

    def known_jobs(self) -> dict[str, str]:
        """Every job this executor tracks, with its current state."""
        with self._cond:
            self._check_open()
            self._escalate(time.time())
            for job in self._jobs.values():
                self._refresh(job)
            return {job_id: str(job.state) for job_id, job in self._jobs.items()}

    def cuda_visible_devices(self, devices: Mapping[str, list[int]]) -> str:
        """The ``CUDA_VISIBLE_DEVICES`` value for a placement (see the module doc)."""
        if not devices:
            return ""
        stride = self._gpus_per_node
        if stride is None:
            stride = 1 + max((i for ids in devices.values() for i in ids), default=0)
        for node, ids in devices.items():
            if any(i >= stride for i in ids):
                raise ExecutorError(
                    f"devices[{node!r}]: ids {ids} exceed gpus_per_node={stride} of this executor"
                )
        return ",".join(str(k * stride + i) for k, ids in enumerate(devices.values()) for i in ids)

    def close(self) -> None:
        """Stop the kill timer thread and release the state directory. Jobs keep
        running; a new instance over the same state directory takes them over
        (and finishes any pending kill deadline)."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
            killer = self._killer
        if killer is not None:
            killer.join(timeout=5)
        self._lock_fh.close()

    # ------------------------------------------------------------------ launching

    def _start(self, req: LaunchRequest) -> JobRecord:
        jid = req.job_id
        cuda = self.cuda_visible_devices(req.devices)
        workdir = req.workdir.absolute() if req.workdir is not None else None
        if workdir is not None and not workdir.is_dir():
            raise ExecutorError(f"job {jid}: workdir {workdir} is not a directory")
        checkpoint_dir = req.checkpoint_dir.absolute()
        log_path = req.log_path.absolute()
        try:
            checkpoint_dir.mkdir(parents=True, exist_ok=True)
            log_path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ExecutorError(f"job {jid}: cannot create {exc.filename}: {exc.strerror}") from None
        job_dir = self._jobs_dir / dir_name(jid)
        shutil.rmtree(job_dir, ignore_errors=True)
        job_dir.mkdir()
        write_json_atomic(job_dir / JOB_FILE, {
            "job_id": jid, "command": req.command, "devices": req.devices,
            "checkpoint_dir": str(checkpoint_dir), "log_path": str(log_path),
            "restart_count": req.restart_count, "grace_period": req.grace_period,
            "launched_at": time.time(),
        })
        env = dict(os.environ if self._base_env is None else self._base_env)
        env.update(req.env)
        env.update({
            "GIGAFACTORY_JOB_ID": jid,
            "GIGAFACTORY_RESTART_COUNT": str(req.restart_count),
            "GIGAFACTORY_CHECKPOINT_DIR": str(checkpoint_dir),
            "GIGAFACTORY_DEVICES": ";".join(
                f"{node}:{','.join(map(str, ids))}" for node, ids in req.devices.items()
            ),
            "CUDA_VISIBLE_DEVICES": cuda,
        })
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        header = (
            f"=== gigafactory {stamp}: job {jid} attempt {req.restart_count + 1} "
            f"(restart_count={req.restart_count}) on the local executor, "
            f"CUDA_VISIBLE_DEVICES={cuda!r}: {shlex.join(req.command)} ===\n"
        )
        read_fd, write_fd = os.pipe()
        try:
            with open(log_path, "ab") as log:
                log.write(header.encode())
                log.flush()
                first = subprocess.Popen(
                    [self._python, "-I", "-S", str(_SUPERVISOR), str(job_dir), str(write_fd),
                     "--", *req.command],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, cwd=workdir,
                    start_new_session=True, pass_fds=(write_fd,),
                )
        except OSError as exc:
            os.close(read_fd)
            shutil.rmtree(job_dir, ignore_errors=True)
            raise ExecutorError(f"job {jid}: cannot start the local supervisor: {exc}") from None
        finally:
            os.close(write_fd)
        try:
            reply = self._handshake(read_fd, jid)
        finally:
            os.close(read_fd)
            with contextlib.suppress(subprocess.TimeoutExpired):
                first.wait(timeout=self._start_timeout)  # exits right after its fork
        if reply is None:  # kill the supervisor (still in the first process's group)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(first.pid, signal.SIGKILL)
            shutil.rmtree(job_dir, ignore_errors=True)
            raise ExecutorError(
                f"job {jid}: the local supervisor did not start within {self._start_timeout} s "
                f"(see {log_path})"
            )
        job = JobRecord(jid, job_dir, req.grace_period)
        job.load_proc()
        return job

    def _handshake(self, fd: int, jid: str) -> dict[str, Any] | None:
        """Read the supervisor's one-line JSON reply (until EOF or the timeout)."""
        data = b""
        end = time.monotonic() + self._start_timeout
        while (left := end - time.monotonic()) > 0:
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                break
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            data += chunk
        try:
            reply = json.loads(data)
        except ValueError:
            return None
        return reply if isinstance(reply, dict) else None

    # ------------------------------------------------------------------ tracking

    def _recover(self) -> None:
        """Load every job left in the state directory by earlier instances."""
        for job_dir in sorted(self._jobs_dir.iterdir()):
            meta = read_json(job_dir / JOB_FILE)
            if meta is None or not isinstance(meta.get("job_id"), str):
                shutil.rmtree(job_dir, ignore_errors=True)  # a launch that never got going
                continue
            job = JobRecord(meta["job_id"], job_dir, float(meta.get("grace_period", 60.0)))
            job.load_proc()
            stop = read_json(job_dir / STOP_FILE)
            if stop is not None:
                job.stop = stop.get("kind")
                job.deadline = stop.get("deadline")
                job.grace_used = float(stop.get("grace") or 0.0)
                job.killed = bool(stop.get("killed"))
            self._jobs[job.job_id] = job
        if any(j.deadline is not None and not j.killed for j in self._jobs.values()):
            self._ensure_killer()

    def _refresh(self, job: JobRecord) -> None:
        """Bring ``job.state`` up to date from ``/proc`` and the state files."""
        if job.state.terminal:
            return
        if process_alive(job.supervisor_pid, job.supervisor_start):
            return
        # The supervisor writes exit.json before it exits, so read it only now.
        result = read_json(job.dir / EXIT_FILE)
        if result is None:
            if process_alive(job.child_pid, job.child_start):
                job.detail = "supervisor gone; job still running (its exit status will be lost)"
                return
            job.state = ReportState.LOST
            job.detail = (
                f"the job's supervisor (pid {job.supervisor_pid or 'unknown'}) ended "
                "without recording an exit status"
            )
            return
        raw = result.get("returncode")
        error = result.get("error")
        job.exit_code = raw if isinstance(raw, int) else None
        job.state, job.detail = classify_exit(
            job.exit_code, stop=job.stop, killed_after=job.grace_used if job.killed else None,
            error=error if isinstance(error, str) else None,
        )

    def _signal_group(self, job: JobRecord, sig: Signals) -> None:
        """Signal the job's process group, if its leader is still the same process
        (running or a zombie not yet reaped: the group can only be ours then)."""
        stat = proc_stat(job.child_pid) if job.child_pid > 0 else None
        if stat is None or (job.child_start is not None and stat[1] != job.child_start):
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(job.child_pid, sig)

    def _escalate(self, now: float) -> None:
        """SIGKILL every job whose grace period is over (called with the lock held)."""
        for job in self._jobs.values():
            if job.deadline is None or job.killed or job.deadline > now:
                continue
            self._refresh(job)
            if job.state.terminal:
                continue
            self._signal_group(job, signal.SIGKILL)
            job.killed = True
            job.save_stop()

    def _ensure_killer(self) -> None:
        if self._killer is None:
            self._killer = threading.Thread(
                target=self._killer_loop, name="gigafactory-local-killer", daemon=True
            )
            self._killer.start()

    def _killer_loop(self) -> None:
        """Sleep until the earliest SIGKILL deadline (or a notify), then escalate."""
        with self._cond:
            while not self._closed:
                now = time.time()
                self._escalate(now)
                deadlines = [
                    j.deadline for j in self._jobs.values()
                    if j.deadline is not None and not j.killed and not j.state.terminal
                ]
                self._cond.wait(max(0.0, min(deadlines) - now) if deadlines else None)

    def _forget(self, job: JobRecord) -> None:
        shutil.rmtree(job.dir, ignore_errors=True)
        self._jobs.pop(job.job_id, None)

    def _get(self, job_id: str) -> JobRecord:
        job = self._jobs.get(job_id)
        if job is None:
            raise ExecutorError(f"local executor: unknown job {job_id!r}")
        return job

