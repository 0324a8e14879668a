"""A scriptable in-memory executor that speaks the Executor protocol."""

from __future__ import annotations

from gigafactory.executors import ExecutorError, JobReport, LaunchRequest, ReportState


class FakeExecutor:
    name = "fake"

    def __init__(self) -> None:
        self.launched: list[LaunchRequest] = []
        self.cancels: list[tuple[str, bool, float | None]] = []
        self.state: dict[str, str] = {}
        self.reports: list[JobReport] = []

    def launch(self, req: LaunchRequest) -> None:
        if self.state.get(req.job_id) == "running":
            raise ExecutorError(f"job {req.job_id}: still running")
        self.launched.append(req)
        self.state[req.job_id] = "running"
        self.reports.append(JobReport(req.job_id, ReportState.RUNNING))

    def signal(self, job_id: str) -> None:
        pass

    def cancel(self, job_id: str, *, grace: float | None = None, preempt: bool = False) -> None:
        if job_id not in self.state:
            raise ExecutorError(f"unknown job {job_id}")
        self.cancels.append((job_id, preempt, grace))

    def finish(self, job_id: str, state: str, exit_code: int | None = None, detail: str = "") -> None:
        """Script: the job ended this way (reported at the next poll)."""
        self.state[job_id] = state
        self.reports.append(JobReport(job_id, ReportState(state), exit_code, detail))

    def poll(self) -> list[JobReport]:
        out, self.reports = self.reports, []
        return out

    def known_jobs(self) -> dict[str, str]:
        return dict(self.state)

    def close(self) -> None:
        pass
