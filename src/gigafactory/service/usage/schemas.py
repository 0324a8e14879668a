"""Response bodies for usage and the guarantee ledger."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from gigafactory.service.common import Out


class ProjectUsage(Out):
    project: str
    partner: str
    finished_gpu_hours: float = Field(description="runs that ended in the window")
    running_gpu_hours: float = Field(description="runs still going, so far")
    runs: int
    budget_gpu_hours: float | None
    budget_used_gpu_hours: float


class PartnerUsage(Out):
    partner: str
    gpu_hours: float


class UsageReport(Out):
    since: datetime
    until: datetime
    projects: list[ProjectUsage]
    partners: list[PartnerUsage]


class UsageRecordOut(Out):
    id: int
    job_id: int
    project: str
    gpus: int
    started_at: datetime
    ended_at: datetime
    gpu_hours: float
    outcome: str


class GuaranteeRow(Out):
    """One partner's guarantee ledger over the window (GPU-hours)."""

    partner: str
    guarantee_gpus: int
    owed_gpu_hours: float = Field(description="min(guarantee, demand), integrated")
    delivered_gpu_hours: float = Field(description="of what was owed, what it got")
    unmet_gpu_hours: float = Field(description="owed but not delivered: never silent")
    lent_gpu_hours: float = Field(description="its idle guarantee used by others")
    used_gpu_hours: float = Field(description="everything it ran, borrowed capacity included")


class GuaranteeLedgerOut(Out):
    since: datetime
    until: datetime
    partners: list[GuaranteeRow]
