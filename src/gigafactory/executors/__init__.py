"""Executors: where jobs actually run (this machine now; the twin, Slurm and Ray later).

All executors implement :class:`~gigafactory.executors.base.Executor` and the
checkpoint protocol described in :mod:`gigafactory.executors.base`. They are
looked up by name in one explicit registry, :data:`EXECUTORS`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gigafactory.executors.base import (
    DEFAULT_GRACE_PERIOD,
    PREEMPTED_EXIT_CODE,
    Executor,
    ExecutorError,
    JobReport,
    LaunchRequest,
    ReportState,
    classify_exit,
    describe_exit,
)
from gigafactory.executors.local import LocalExecutor
from gigafactory.executors.twin import TwinExecutor

#: Executor name -> factory. Add new executors here (one line each).
EXECUTORS: dict[str, Callable[..., Executor]] = {
    "local": LocalExecutor,
    "twin": TwinExecutor,
}


def get_executor(name: str, **kwargs: Any) -> Executor:
    """Build the executor registered as ``name`` with ``kwargs`` (its constructor's).

    Raises :class:`ExecutorError` naming the valid executors for an unknown name.
    """
    factory = EXECUTORS.get(name)
    if factory is None:
        valid = ", ".join(sorted(EXECUTORS))
        raise ExecutorError(f"unknown executor {name!r}; valid executors: {valid}")
    return factory(**kwargs)


__all__ = [
    "DEFAULT_GRACE_PERIOD",
    "EXECUTORS",
    "PREEMPTED_EXIT_CODE",
    "Executor",
    "ExecutorError",
    "JobReport",
    "LaunchRequest",
    "LocalExecutor",
    "ReportState",
    "TwinExecutor",
    "classify_exit",
    "describe_exit",
    "get_executor",
]
