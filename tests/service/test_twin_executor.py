"""The control plane over the ``twin`` executor (simulated jobs), on the test's clock:
a requeued job resumes from its simulated checkpoint and is charged for real work."""

from __future__ import annotations

from pathlib import Path

from gigafactory.executors import TwinExecutor
from gigafactory.service.scheduler.loop import SchedulerLoop
from gigafactory.service.scheduler.runner import make_executor

from .helpers import Api


def test_twin_job_preempted_and_resumed(api: Api, tmp_path: Path) -> None:
    api.tree()
    ada = api.user("ada", ("alpha", "member"))
    twin = TwinExecutor(tmp_path / "twin", speed=1.0, clock=lambda: api.clock().timestamp())
    loop = SchedulerLoop(api.ctx, twin)
    try:
        jid = api.job(ada, "alpha", 8, checkpointable=True, walltime=3600,
                      env={"GIGAFACTORY_TWIN_DURATION": "600",
                           "GIGAFACTORY_TWIN_CHECKPOINT_INTERVAL": "100"})["id"]
        loop.run_once()
        loop.run_once()
        assert api.get(f"/v1/jobs/{jid}", ada).json()["state"] == "running"
        api.clock.advance(250)
        loop.run_once()
        assert api.post(f"/v1/jobs/{jid}/requeue", ada).json()["state"] == "preempting"
        loop.run_once()  # SIGTERM: the simulated job checkpoints at once
        api.clock.advance(1)
        loop.run_once()  # preempted → requeued → started again (restart 1)
        loop.run_once()
        job = api.get(f"/v1/jobs/{jid}", ada).json()
        assert job["state"] == "running" and job["restart_count"] == 1
        api.clock.advance(360)
        loop.run_once()
        job = api.get(f"/v1/jobs/{jid}", ada).json()
        assert job["state"] == "completed", job["state_reason"]
        # 250 s before the requeue, 350 s after it (resumed at 250 of 600), 8 GPUs.
        assert abs(job["gpu_hours"] - 8 * 611 / 3600) < 0.05
        text = api.get(f"/v1/jobs/{jid}/logs", ada).json()["data"]
        assert text.count("attempt") >= 2
    finally:
        twin.close()


def test_settings_select_the_twin(api: Api, tmp_path: Path) -> None:
    ctx = api.ctx
    ctx.settings = ctx.settings.model_copy(update={"executor": "twin", "state_dir": tmp_path})
    executor = make_executor(ctx)
    try:
        assert executor.name == "twin"
    finally:
        executor.close()
