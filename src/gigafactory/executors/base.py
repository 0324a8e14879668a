"""The executor protocol: how the control plane starts, stops and watches jobs.

An executor turns a scheduling decision ("start job X on these accelerators") into
running processes somewhere (this machine, Slurm, Ray, the digital twin) and
reports back what happened to them. Every executor speaks the same checkpoint
protocol (DESIGN.md §4):

* to preempt or cancel a job the executor sends it **SIGTERM**, waits the job's
  grace period (default 60 s), then kills it (SIGKILL);
* a job that wants to survive preemption writes a checkpoint into
  ``$GIGAFACTORY_CHECKPOINT_DIR`` when it gets SIGTERM and then exits with
  :data:`PREEMPTED_EXIT_CODE` (143 = 128 + SIGTERM, what a shell reports for a
  job stopped by SIGTERM, so Slurm and friends read it the same way);
* on restart it is launched with the same checkpoint directory and
  ``$GIGAFACTORY_RESTART_COUNT`` raised by one, and resumes from its checkpoint.

How an ended job is reported (the same rules on every executor):

* if the executor stopped it with ``cancel(preempt=True)``: ``preempted``;
* if the executor stopped it with ``cancel()``: ``cancelled``;
* otherwise by its exit status: 0 is ``completed``; :data:`PREEMPTED_EXIT_CODE`
  or death by SIGTERM is ``preempted`` (someone asked it to stop, for example
  :meth:`Executor.signal` or a node shutdown, and it stopped; requeue it);
  anything else is ``failed``;
* ``lost`` when the executor can no longer tell what became of the job (its
  supervisor vanished without recording an exit status).

``JobReport.exit_code`` is the process exit status, negative ``-N`` when the
process was killed by signal ``N`` (Python's ``subprocess`` convention), and
``None`` when unknown.
"""

from __future__ import annotations

import math
import signal
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Protocol, runtime_checkable

from gigafactory.executors._supervisor import describe_returncode

#: Exit status of a job that checkpointed on SIGTERM and stopped (128 + SIGTERM).
PREEMPTED_EXIT_CODE = 143

#: Default seconds between SIGTERM and SIGKILL (DESIGN.md §4).
DEFAULT_GRACE_PERIOD = 60.0


class ExecutorError(ValueError):
    """A request an executor cannot carry out: bad launch request, unknown job,
    unknown executor name, or an executor used after ``close()``."""


class ReportState(StrEnum):
    """What an executor can say about a job. Values compare equal to plain strings."""

    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    PREEMPTED = "preempted"
    CANCELLED = "cancelled"
    LOST = "lost"

    @property
    def terminal(self) -> bool:
        """True for every state but ``running``: the job's processes are gone."""
        return self is not ReportState.RUNNING


@dataclass(frozen=True)
class LaunchRequest:
    """Everything an executor needs to start one attempt of a job.

    ``devices`` maps node name -> the virtual accelerator ids the job owns on that
    node (``Placement.nodes`` turned into names and ids by the control plane), in
    node order. ``env`` is added to the job's environment; the executor's own
    ``GIGAFACTORY_*`` variables and ``CUDA_VISIBLE_DEVICES`` take precedence.
    ``restart_count`` is 0 for the first attempt and grows by one per relaunch.
    ``workdir`` is the job's working directory (``None``: the executor decides).

    Invalid fields raise :class:`ExecutorError` at construction, naming the field.
    ``str`` paths are accepted and turned into :class:`~pathlib.Path`.
    """

    job_id: str
    command: list[str]
    devices: dict[str, list[int]]
    env: dict[str, str]
    checkpoint_dir: Path
    log_path: Path
    restart_count: int = 0
    grace_period: float = DEFAULT_GRACE_PERIOD
    workdir: Path | None = None

    def __post_init__(self) -> None:
        # Coerce first (frozen: go through object.__setattr__), then validate.
        for name in ("checkpoint_dir", "log_path", "workdir"):
            value = getattr(self, name)
            if isinstance(value, str):
                object.__setattr__(self, name, Path(value))
        object.__setattr__(self, "command", list(self.command))
        object.__setattr__(self, "devices", {k: list(v) for k, v in self.devices.items()})
        object.__setattr__(self, "env", dict(self.env))
        _validate(self)


def _validate(req: LaunchRequest) -> None:
    jid = req.job_id
    if not isinstance(jid, str) or not jid.strip():
        raise ExecutorError(f"launch request: job_id must be a non-empty string, got {jid!r}")
    if any(ord(c) < 32 for c in jid):
        raise ExecutorError(f"launch request: job_id {jid!r} must not contain control characters")

    def bad(what: str) -> ExecutorError:
        return ExecutorError(f"job {jid}: {what}")

    if not req.command or not all(isinstance(a, str) for a in req.command) or not req.command[0]:
        raise bad(f"command must be a non-empty list of strings, got {req.command!r}")
    if any("\0" in a for a in req.command):
        raise bad("command arguments must not contain NUL characters")
    for node, ids in req.devices.items():
        if not isinstance(node, str) or not node:
            raise bad(f"devices: node names must be non-empty strings, got {node!r}")
        if not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ids):
            raise bad(f"devices[{node!r}]: expected non-negative integer ids, got {ids!r}")
        if len(set(ids)) != len(ids):
            raise bad(f"devices[{node!r}]: duplicate accelerator ids in {ids!r}")
    for key, value in req.env.items():
        if not isinstance(key, str) or not key or "=" in key or "\0" in key:
            raise bad(f"env: invalid variable name {key!r}")
        if not isinstance(value, str) or "\0" in value:
            raise bad(f"env[{key!r}]: value must be a string without NUL, got {value!r}")
    for name in ("checkpoint_dir", "log_path"):
        if not isinstance(getattr(req, name), Path):
            raise bad(f"{name} must be a path, got {getattr(req, name)!r}")
    if req.workdir is not None and not isinstance(req.workdir, Path):
        raise bad(f"workdir must be a path or None, got {req.workdir!r}")
    rc = req.restart_count
    if not isinstance(rc, int) or isinstance(rc, bool) or rc < 0:
        raise bad(f"restart_count must be a non-negative integer, got {rc!r}")
    grace = req.grace_period
    if not isinstance(grace, int | float) or not math.isfinite(grace) or grace < 0:
        raise bad(f"grace_period must be a finite number of seconds >= 0, got {grace!r}")


def describe_exit(returncode: int | None) -> str:
    """``exit code 3``, ``killed by SIGKILL`` or ``exit status unknown``."""
    return "exit status unknown" if returncode is None else describe_returncode(returncode)


def classify_exit(
    returncode: int | None,
    *,
    stop: str | None = None,
    killed_after: float | None = None,
    error: str | None = None,
) -> tuple[ReportState, str]:
    """The report state and detail of an ended job, by the rules in the module doc.

    ``stop`` is ``"preempt"`` or ``"cancel"`` when the executor stopped the job,
    ``killed_after`` the grace period after which it sent SIGKILL (if it did),
    ``error`` a message from the executor (such as "cannot execute ...").
    """
    how = describe_exit(returncode)
    if killed_after is not None and returncode == -signal.SIGKILL:
        how += f" at the end of its {killed_after:g} s grace period"
    elif stop is not None:
        how += " after SIGTERM"
    if error:
        how += f": {error}"
    if stop == "preempt":
        return ReportState.PREEMPTED, f"preempted: {how}"
    if stop == "cancel":
        return ReportState.CANCELLED, f"cancelled: {how}"
    if returncode == 0:
        return ReportState.COMPLETED, how
    if returncode in (PREEMPTED_EXIT_CODE, -signal.SIGTERM):
        return ReportState.PREEMPTED, f"stopped on SIGTERM: {how}"
    return ReportState.FAILED, how


@dataclass(frozen=True)
class JobReport:
    """One state change of one job, as returned by :meth:`Executor.poll`."""

    job_id: str
    state: ReportState
    exit_code: int | None = None
    detail: str = field(default="")


@runtime_checkable
class Executor(Protocol):
    """What the control plane needs from an executor. Implementations must be safe
    to call from a scheduler loop thread while another thread also calls them."""

    name: str

    def launch(self, req: LaunchRequest) -> None:
        """Start one attempt of a job; it shows up as ``running`` in the next poll.

        Raises :class:`ExecutorError` for a request this executor cannot run (or a
        job id it still runs). A command that starts but cannot be executed is
        reported as ``failed`` by :meth:`poll`, not raised.
        """
        ...

    def signal(self, job_id: str) -> None:
        """Send SIGTERM (checkpoint and stop, please) without a kill deadline."""
        ...

    def cancel(self, job_id: str, *, grace: float | None = None, preempt: bool = False) -> None:
        """SIGTERM now, SIGKILL after ``grace`` seconds (default: the job's grace
        period) unless it has ended. Returns at once. The job ends as
        ``preempted`` with ``preempt=True``, else ``cancelled``. A no-op for a job
        that has already ended; :class:`ExecutorError` for an unknown job."""
        ...

    def poll(self) -> list[JobReport]:
        """State changes since the last poll (only the latest state of each job).
        Never blocks on a job."""
        ...

    def known_jobs(self) -> dict[str, str]:
        """Job ids this executor still tracks, with their current state."""
        ...

    def close(self) -> None:
        """Release the executor's resources. Running jobs keep running."""
        ...
