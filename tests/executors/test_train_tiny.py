"""The checkpoint protocol end to end: examples/train_tiny.py preempted mid-run by the
local executor and relaunched resumes from its checkpoint and ends bit-identical to
an uninterrupted run."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from gigafactory.executors import PREEMPTED_EXIT_CODE, JobReport, LaunchRequest, LocalExecutor

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "train_tiny.py"
ARGS = ["--steps", "400", "--seed", "7", "--log-every", "10", "--checkpoint-every", "30"]


def train(tmp_path: Path, job_id: str, *extra: str, restart_count: int = 0) -> LaunchRequest:
    return LaunchRequest(
        job_id, [sys.executable, str(SCRIPT), *ARGS, *extra], devices={"n0": [0]}, env={},
        checkpoint_dir=tmp_path / job_id / "ckpt", log_path=tmp_path / job_id / "log.txt",
        restart_count=restart_count, grace_period=30,
    )


def test_preempted_training_resumes_to_the_same_result(
    tmp_path: Path, executor: LocalExecutor, final_report: Callable[..., JobReport],
    wait: Callable[..., Any],
) -> None:
    reference = train(tmp_path, "reference")
    executor.launch(reference)
    slow = train(tmp_path, "preempted", "--step-sleep", "0.01")
    executor.launch(slow)

    # Preempt once the slow run has made progress (and before it can finish).
    wait(lambda: slow.log_path.exists() and "step 20/400" in slow.log_path.read_text(),
         "the slow run to reach step 20")
    executor.cancel("preempted", preempt=True)
    report = final_report(executor, "preempted")
    assert (report.state, report.exit_code) == ("preempted", PREEMPTED_EXIT_CODE)
    assert not (slow.checkpoint_dir / "result.json").exists()
    with np.load(slow.checkpoint_dir / "checkpoint.npz") as ckpt:
        saved_step = int(ckpt["step"])
    assert 20 <= saved_step < 400

    # Relaunch (no sleep this time: the pace is not part of the training settings).
    executor.launch(train(tmp_path, "preempted", restart_count=1))
    assert final_report(executor, "preempted").state == "completed"
    assert final_report(executor, "reference").state == "completed"

    resumed = json.loads((slow.checkpoint_dir / "result.json").read_text())
    uninterrupted = json.loads((reference.checkpoint_dir / "result.json").read_text())
    assert resumed == uninterrupted
    assert resumed["steps"] == 400
    assert re.fullmatch(r"[0-9a-f]{64}", resumed["weights_sha256"])
    assert resumed["final_loss"] < 0.69  # it learned something: below log(2), chance level

    log = slow.log_path.read_text()
    assert f"SIGTERM: checkpoint saved at step {saved_step}" in log
    assert f"restart_count=1, resumed from step {saved_step} of 400" in log
    assert "attempt 1 (restart_count=0)" in log and "attempt 2 (restart_count=1)" in log
    assert f"weights_sha256={uninterrupted['weights_sha256']}" in log


def test_resume_with_other_settings_is_refused(
    tmp_path: Path, executor: LocalExecutor, final_report: Callable[..., JobReport],
) -> None:
    first = train(tmp_path, "j")
    executor.launch(first)
    assert final_report(executor, "j").state == "completed"
    other = LaunchRequest(
        "j", [sys.executable, str(SCRIPT), "--steps", "50"], devices={}, env={},
        checkpoint_dir=first.checkpoint_dir, log_path=first.log_path, restart_count=1,
    )
    executor.launch(other)
    report = final_report(executor, "j")
    assert (report.state, report.exit_code) == ("failed", 2)
    assert "checkpoint was written with different settings (seed, steps)" in first.log_path.read_text()
