"""HTTP routes for usage (per project and partner, per run) and the guarantee ledger."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query

from gigafactory.service.common import IsoDatetime, Name, Page
from gigafactory.service.deps import AUTH_ERRORS, NOT_FOUND, Caller, Ctx, Db, Now, ServiceRoute
from gigafactory.service.usage import service
from gigafactory.service.usage.schemas import GuaranteeLedgerOut, UsageRecordOut, UsageReport

router = APIRouter(route_class=ServiceRoute, prefix="/v1/usage", tags=["usage"], responses={**AUTH_ERRORS, **NOT_FOUND})
Since = Annotated[IsoDatetime | None, Query(description="default: 30 days ago")]
Until = Annotated[IsoDatetime | None, Query(description="default: now")]


def _span(since: datetime | None, until: datetime | None, now: datetime) -> tuple[datetime, datetime]:
    end = until or now + timedelta(seconds=1)
    return since or end - timedelta(days=30), end


@router.get("")
def usage_report(
    db: Db,
    who: Caller,
    now: Now,
    project: Annotated[Name | None, Query()] = None,
    partner: Annotated[Name | None, Query()] = None,
    since: Since = None,
    until: Until = None,
) -> UsageReport:
    """GPU-hours per project and per partner in a window, with budgets."""
    lo, hi = _span(since, until, now)
    return service.report(db, who, lo, hi, now, project=project, partner=partner)


@router.get("/records")
def usage_records(
    db: Db,
    who: Caller,
    ctx: Ctx,
    project: Annotated[Name | None, Query()] = None,
    job: Annotated[int | None, Query(ge=1, le=2**62)] = None,
    limit: Annotated[int | None, Query(ge=1, le=1000)] = None,
    cursor: Annotated[int | None, Query(ge=1, le=2**62)] = None,
) -> Page[UsageRecordOut]:
    """The ledger per job run: GPUs, start, end, GPU-hours and how it ended."""
    size = min(limit or ctx.settings.page_size, ctx.settings.max_page_size)
    items, nxt = service.records(db, who, limit=size, cursor=cursor, project=project, job_id=job)
    return Page[UsageRecordOut](items=items, next_cursor=nxt)


@router.get("/guarantees")
def guarantee_ledger(
    db: Db,
    who: Caller,
    now: Now,
    partner: Annotated[Name | None, Query()] = None,
    since: Since = None,
    until: Until = None,
) -> GuaranteeLedgerOut:
    """Per partner: GPU-hours owed, delivered, unmet and lent out (hourly resolution)."""
    lo, hi = _span(since, until, now)
    return service.guarantees(db, who, lo, hi, partner)
