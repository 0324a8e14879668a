"""Fixtures for the executor tests: executors that clean up after themselves,
launch-request factories and deadline-based waiting (no fixed sleeps)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from gigafactory.executors import JobReport, LaunchRequest, LocalExecutor

T = TypeVar("T")
DEADLINE = 30.0  # generous: the machine is shared; tests never assert durations

# A job that ignores SIGTERM and says so by writing its pid (and its parent's) to argv[1].
IGNORE_TERM = (
    "import json, os, signal, sys, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "open(sys.argv[1] + '.tmp', 'w').write(json.dumps({'pid': os.getpid(), 'ppid': os.getppid()}))\n"
    "os.replace(sys.argv[1] + '.tmp', sys.argv[1])\n"
    "time.sleep(120)\n"
)


def wait_until(predicate: Callable[[], T | None], what: str, timeout: float = DEADLINE) -> T:
    """Poll ``predicate`` until it returns something truthy; fail naming ``what``."""
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def process_gone(pid: int) -> bool:
    """True if ``pid`` no longer runs (absent or a zombie nobody reaped yet)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")


@pytest.fixture
def wait() -> Callable[..., Any]:
    """``wait(predicate, what, timeout=30)``: see :func:`wait_until`."""
    return wait_until


@pytest.fixture
def gone() -> Callable[[int], bool]:
    """``gone(pid)``: see :func:`process_gone`."""
    return process_gone


@pytest.fixture
def ignore_term() -> str:
    """Python code of a job that ignores SIGTERM (see :data:`IGNORE_TERM`)."""
    return IGNORE_TERM


@pytest.fixture
def executors(tmp_path: Path) -> Iterator[list[LocalExecutor]]:
    """Executors registered here get their jobs killed and are closed after the test."""
    made: list[LocalExecutor] = []
    yield made
    for ex in made:
        if ex.closed:
            continue
        try:
            for job_id, state in ex.known_jobs().items():
                if state == "running":
                    ex.cancel(job_id, grace=0)
        finally:
            ex.close()


@pytest.fixture
def executor(tmp_path: Path, executors: list[LocalExecutor]) -> LocalExecutor:
    ex = LocalExecutor(tmp_path / "state")
    executors.append(ex)
    return ex


@pytest.fixture
def make_req(tmp_path: Path) -> Callable[..., LaunchRequest]:
    """``make_req(job_id, command=None, **fields)``: paths default under tmp_path."""

    def make(job_id: str, command: list[str] | None = None, **fields: Any) -> LaunchRequest:
        fields.setdefault("devices", {})
        fields.setdefault("env", {})
        fields.setdefault("checkpoint_dir", tmp_path / "ckpt" / job_id)
        fields.setdefault("log_path", tmp_path / "logs" / f"{job_id}.log")
        return LaunchRequest(job_id, command or [sys.executable, "-c", "pass"], **fields)

    return make


@pytest.fixture
def final_report() -> Callable[..., JobReport]:
    """``final_report(executor, job_id)``: poll until the job's report is terminal.

    Reports of other jobs seen on the way are kept, so they can be asked for later.
    A report is handed out once: a relaunched job waits for its new final report.
    """
    pending: dict[tuple[int, str], JobReport] = {}

    def get(ex: LocalExecutor, job_id: str, timeout: float = DEADLINE) -> JobReport:
        seen: list[JobReport] = []

        def terminal() -> JobReport | None:
            for report in ex.poll():
                seen.append(report)
                if report.state.terminal:
                    pending[id(ex), report.job_id] = report
            return pending.pop((id(ex), job_id), None)

        try:
            return wait_until(terminal, f"a final report of {job_id}", timeout)
        except AssertionError:
            raise AssertionError(f"no final report of {job_id}; reports seen: {seen}") from None

    return get
