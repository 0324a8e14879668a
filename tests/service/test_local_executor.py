"""End to end with the real ``local`` executor and examples/train_tiny.py: a requeued job
gets SIGTERM, checkpoints, and resumes from the same directory with restart count 1."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from gigafactory.executors import LocalExecutor
from gigafactory.service.scheduler.loop import SchedulerLoop

from .helpers import Api

TRAIN = Path(__file__).resolve().parents[2] / "examples" / "train_tiny.py"


def wait(cond: Callable[[], bool], loop: SchedulerLoop, timeout: float = 60.0) -> None:
    """Cycle (advancing the fake clock) until ``cond`` holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        loop.ctx.clock.advance(1)  # type: ignore[attr-defined]
        loop.run_once()
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError("timed out waiting for the job")


@pytest.mark.slow
def test_requeued_job_resumes_from_its_checkpoint(api: Api, tmp_path: Path) -> None:
    api.tree()
    ada = api.user("ada", ("alpha", "member"))
    executor = LocalExecutor(tmp_path / "executor", gpus_per_node=8)
    loop = SchedulerLoop(api.ctx, executor)
    try:
        jid = api.job(ada, "alpha", 2, checkpointable=True, walltime=600, grace_period=30,
                      command=[sys.executable, str(TRAIN), "--steps", "400", "--step-sleep",
                               "0.01", "--checkpoint-every", "20", "--log-every", "20"])["id"]

        def logs() -> str:
            return str(api.get(f"/v1/jobs/{jid}/logs", ada).json()["data"])

        def state() -> str:
            return str(api.get(f"/v1/jobs/{jid}", ada).json()["state"])

        wait(lambda: "step 40/" in logs(), loop)
        job = api.get(f"/v1/jobs/{jid}", ada).json()
        assert job["state"] == "running"
        assert "CUDA_VISIBLE_DEVICES" not in job["env"]
        assert api.post(f"/v1/jobs/{jid}/requeue", ada).status_code == 200
        wait(lambda: state() in ("requeued", "starting", "running") and "SIGTERM" in logs(), loop)
        wait(lambda: state() == "completed", loop)
        text = logs()
        assert "restart_count=0, starting from scratch" in text
        assert "restart_count=1, resumed from step" in text
        assert "train_tiny: done: steps=400" in text
        final = api.get(f"/v1/jobs/{jid}", ada).json()
        assert final["restart_count"] == 1 and final["exit_code"] == 0
        assert (Path(final["checkpoint_dir"]) / "result.json").is_file()
        chunk = api.get(f"/v1/jobs/{jid}/logs", ada, params={"offset": 0, "limit": 50}).json()
        assert chunk["next_offset"] == 50 and chunk["eof"] is False
        streamed = api.client.get(f"/v1/jobs/{jid}/logs/stream", headers=api.h(ada)).text
        assert streamed == text
    finally:
        executor.close()
