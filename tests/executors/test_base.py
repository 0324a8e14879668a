"""Executor protocol types and the registry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gigafactory.executors import (
    EXECUTORS,
    Executor,
    ExecutorError,
    LaunchRequest,
    LocalExecutor,
    ReportState,
    classify_exit,
    get_executor,
)


def req(**overrides: Any) -> LaunchRequest:
    fields: dict[str, Any] = {
        "job_id": "j1", "command": ["true"], "devices": {"n0": [0, 1]}, "env": {"A": "1"},
        "checkpoint_dir": Path("/tmp/ck"), "log_path": Path("/tmp/log"),
    }
    fields.update(overrides)
    return LaunchRequest(**fields)


def test_launch_request_defaults_and_path_coercion() -> None:
    r = req(checkpoint_dir="ck", log_path="logs/j1.log", workdir="w")
    assert (r.restart_count, r.grace_period) == (0, 60.0)
    assert (r.checkpoint_dir, r.log_path, r.workdir) == (Path("ck"), Path("logs/j1.log"), Path("w"))
    assert req().workdir is None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"job_id": ""}, "job_id must be a non-empty string"),
        ({"job_id": "a\nb"}, "must not contain control characters"),
        ({"command": []}, "job j1: command must be a non-empty list of strings"),
        ({"command": ["x", 3]}, "job j1: command must be a non-empty list of strings"),
        ({"devices": {"n0": [0, -1]}}, r"devices\['n0'\]: expected non-negative integer ids"),
        ({"devices": {"n0": [1, 1]}}, r"devices\['n0'\]: duplicate accelerator ids"),
        ({"devices": {"": [0]}}, "devices: node names must be non-empty strings"),
        ({"env": {"A=B": "1"}}, "env: invalid variable name 'A=B'"),
        ({"env": {"A": 1}}, r"env\['A'\]: value must be a string"),
        ({"restart_count": -1}, "restart_count must be a non-negative integer, got -1"),
        ({"grace_period": float("nan")}, "grace_period must be a finite number of seconds >= 0"),
        ({"grace_period": -1}, "grace_period must be a finite number of seconds >= 0"),
        ({"checkpoint_dir": None}, "checkpoint_dir must be a path, got None"),
    ],
)
def test_bad_launch_requests_name_the_field(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ExecutorError, match=message):
        req(**overrides)


def test_report_states() -> None:
    assert [s for s in ReportState if not s.terminal] == [ReportState.RUNNING]
    assert ReportState("preempted") == "preempted"
    assert {str(s) for s in ReportState} == {
        "running", "completed", "failed", "preempted", "cancelled", "lost"}


def test_registry_builds_local_and_names_valid_executors_on_error(tmp_path: Path) -> None:
    assert "local" in EXECUTORS
    ex = get_executor("local", state_dir=tmp_path / "state")
    try:
        assert isinstance(ex, LocalExecutor)
        assert isinstance(ex, Executor)
        assert ex.name == "local"
    finally:
        ex.close()
    with pytest.raises(ExecutorError, match=r"unknown executor 'slurmm'; valid executors: local"):
        get_executor("slurmm")


@pytest.mark.parametrize(
    ("returncode", "kwargs", "state", "detail"),
    [
        (0, {}, "completed", "exit code 0"),
        (1, {}, "failed", "exit code 1"),
        (-6, {}, "failed", "killed by SIGABRT"),
        (143, {}, "preempted", "stopped on SIGTERM: exit code 143"),
        (-15, {}, "preempted", "stopped on SIGTERM: killed by SIGTERM"),
        (0, {"stop": "preempt"}, "preempted", "preempted: exit code 0 after SIGTERM"),
        (1, {"stop": "cancel"}, "cancelled", "cancelled: exit code 1 after SIGTERM"),
        (-9, {"stop": "preempt", "killed_after": 2.5}, "preempted",
         "preempted: killed by SIGKILL at the end of its 2.5 s grace period"),
        (127, {"error": "cannot execute 'x'"}, "failed", "exit code 127: cannot execute 'x'"),
        (None, {}, "failed", "exit status unknown"),
    ],
)
def test_exit_classification_rules(
    returncode: int | None, kwargs: dict[str, Any], state: str, detail: str
) -> None:
    assert classify_exit(returncode, **kwargs) == (state, detail)
