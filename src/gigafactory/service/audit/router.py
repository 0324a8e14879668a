"""``GET /v1/audit``: the audit log, admins only, newest first."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from gigafactory.service.audit import service
from gigafactory.service.audit.schemas import AuditOut
from gigafactory.service.auth.access import require_admin
from gigafactory.service.common import Name, Page
from gigafactory.service.deps import AUTH_ERRORS, Caller, Ctx, Db, ServiceRoute

router = APIRouter(route_class=ServiceRoute, prefix="/v1", tags=["audit"], responses=AUTH_ERRORS)
Action = Annotated[str | None, Query(max_length=64, pattern=r"^[a-z.]+$")]


@router.get("/audit")
def audit_log(
    db: Db,
    who: Caller,
    ctx: Ctx,
    actor: Annotated[Name | None, Query()] = None,
    action: Action = None,
    limit: Annotated[int | None, Query(ge=1, le=1000)] = None,
    cursor: Annotated[int | None, Query(ge=1, le=2**62)] = None,
) -> Page[AuditOut]:
    """Who changed what, when. Every mutating call writes one entry."""
    require_admin(who, "read the audit log")
    size = min(limit or ctx.settings.page_size, ctx.settings.max_page_size)
    rows = service.entries(db, limit=size + 1, before=cursor, actor=actor, action=action)
    items = [AuditOut.model_validate(r) for r in rows[:size]]
    return Page[AuditOut](items=items, next_cursor=rows[size - 1].id if len(rows) > size else None)
