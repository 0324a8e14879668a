"""Request and response bodies for partners, programmes, projects and budgets."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field

from gigafactory.service.common import GpuCount, IsoDatetime, Name, Out, Strict, Text200

Weight = Annotated[float, Field(gt=0, le=1e6)]


class PartnerCreate(Strict):
    """A partner hangs under the root of the share tree."""

    name: Name
    title: Text200 = ""
    guarantee: GpuCount = Field(default=0, description="GPUs owed when it has demand")
    borrow_limit: GpuCount | None = Field(
        default=None, description="GPUs it may use above its guarantee; null = no limit"
    )
    lend_limit: GpuCount | None = Field(
        default=None, description="GPUs of idle guarantee others may use; null = all"
    )
    weight: Weight = 1.0
    tenant_class: Name | None = Field(
        default=None, description="eligibility class, e.g. startup, sme, industry, academic"
    )


class TenantCreate(PartnerCreate):
    """A programme (``parent``: its partner) or a project (``parent``: its programme)."""

    parent: Name


class TenantUpdate(Strict):
    """Fields to change; a field set to null clears it (borrow/lend limit: no limit)."""

    title: Text200 | None = None
    guarantee: GpuCount | None = None
    borrow_limit: GpuCount | None = None
    lend_limit: GpuCount | None = None
    weight: Weight | None = None
    tenant_class: Name | None = None


class BudgetSet(Strict):
    gpu_hours: Annotated[float, Field(ge=0, le=1e12)] | None = Field(
        description="GPU-hours granted; null removes the budget (unlimited)"
    )
    expires_at: IsoDatetime | None = Field(default=None, description="when the grant lapses")
    reset_used: bool = Field(default=False, description="start counting usage from zero again")


class BudgetOut(Out):
    project: str
    gpu_hours: float | None
    expires_at: datetime | None
    used_gpu_hours: float = Field(description="finished runs")
    running_gpu_hours: float = Field(description="runs in progress, so far")
    remaining_gpu_hours: float | None
    exhausted: bool
    reason: str | None = None


class TenantOut(Out):
    name: str
    kind: str
    parent: str | None
    title: str
    guarantee: int
    borrow_limit: int | None
    lend_limit: int | None
    weight: float
    tenant_class: str | None
    created_at: datetime
    budget: BudgetOut | None = None
