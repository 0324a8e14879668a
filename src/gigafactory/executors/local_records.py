"""What the local executor keeps on disk for each job. See
:mod:`gigafactory.executors.local`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gigafactory.executors._supervisor import PROC_FILE, read_json, write_json_atomic
from gigafactory.executors.base import ReportState

JOB_FILE = "job.json"
STOP_FILE = "stop.json"


@dataclass
class JobRecord:
    """What this instance knows about one tracked job (mirrors its state files)."""

    job_id: str
    dir: Path
    grace_period: float
    supervisor_pid: int = 0
    supervisor_start: int | None = None
    child_pid: int = 0
    child_start: int | None = None
    stop: str | None = None  # "cancel" | "preempt": why the executor stopped it
    deadline: float | None = None  # wall-clock time of the SIGKILL
    grace_used: float = 0.0
    killed: bool = False
    state: ReportState = ReportState.RUNNING
    exit_code: int | None = None
    detail: str = ""
    reported: ReportState | None = None  # the last state poll() delivered

    def save_stop(self) -> None:
        write_json_atomic(
            self.dir / STOP_FILE,
            {"kind": self.stop, "deadline": self.deadline, "grace": self.grace_used,
             "killed": self.killed},
        )

    def load_proc(self) -> None:
        proc = read_json(self.dir / PROC_FILE) or {}
        self.supervisor_pid = int(proc.get("supervisor_pid") or 0)
        self.supervisor_start = proc.get("supervisor_start")
        self.child_pid = int(proc.get("child_pid") or 0)
        self.child_start = proc.get("child_start")
