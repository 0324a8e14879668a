"""HTTP routes for partners, programmes and projects (one set per kind) and budgets."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from gigafactory.service.common import Name
from gigafactory.service.deps import (
    AUTH_ERRORS,
    CONFLICT,
    NOT_FOUND,
    Caller,
    Ctx,
    Db,
    Now,
    ServiceRoute,
)
from gigafactory.service.tenants import service
from gigafactory.service.tenants.schemas import (
    BudgetOut,
    BudgetSet,
    PartnerCreate,
    TenantCreate,
    TenantOut,
    TenantUpdate,
)

router = APIRouter(route_class=ServiceRoute, prefix="/v1", responses=AUTH_ERRORS)
TenantName = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9._-]*$")]
KINDS = {"partners": "partner", "programmes": "programme", "projects": "project"}


def _add_routes(plural: str, kind: str) -> None:
    tag = plural

    @router.get(f"/{plural}", tags=[tag], name=f"list_{plural}")
    def list_(
        db: Db, who: Caller, now: Now, parent: Annotated[Name | None, Query()] = None
    ) -> list[TenantOut]:
        rows = service.list_tenants(db, who, kind, parent)
        return [service.tenant_out(db, t, now, budget=True) for t in rows]

    if kind == "partner":

        @router.post(f"/{plural}", status_code=201, tags=[tag], name=f"create_{kind}",
                     responses=CONFLICT)
        def create_partner(body: PartnerCreate, db: Db, who: Caller, ctx: Ctx, now: Now) -> TenantOut:
            t = service.create_tenant(db, who, kind, body, ctx.facility.total_gpus, now)
            return service.tenant_out(db, t, now, budget=True)

    else:

        @router.post(f"/{plural}", status_code=201, tags=[tag], name=f"create_{kind}",
                     responses=CONFLICT)
        def create(body: TenantCreate, db: Db, who: Caller, ctx: Ctx, now: Now) -> TenantOut:
            t = service.create_tenant(db, who, kind, body, ctx.facility.total_gpus, now)
            return service.tenant_out(db, t, now, budget=True)

    @router.get(f"/{plural}/{{name}}", tags=[tag], name=f"read_{kind}", responses=NOT_FOUND)
    def read(name: TenantName, db: Db, who: Caller, now: Now) -> TenantOut:
        return service.tenant_out(db, service.read_tenant(db, who, kind, name), now, budget=True)

    @router.patch(f"/{plural}/{{name}}", tags=[tag], name=f"update_{kind}",
                  responses={**NOT_FOUND, **CONFLICT})
    def update(
        name: TenantName, body: TenantUpdate, db: Db, who: Caller, ctx: Ctx, now: Now
    ) -> TenantOut:
        t = service.update_tenant(db, who, kind, name, body, ctx.facility.total_gpus, now)
        ctx.submitter.forget_projects()
        return service.tenant_out(db, t, now, budget=True)

    @router.delete(f"/{plural}/{{name}}", status_code=204, tags=[tag], name=f"delete_{kind}",
                   responses={**NOT_FOUND, **CONFLICT}, response_class=Response)
    def delete(name: TenantName, db: Db, who: Caller, ctx: Ctx, now: Now) -> Response:
        service.delete_tenant(db, who, kind, name, now)
        ctx.submitter.forget_projects()
        return Response(status_code=204)


for _plural, _kind in KINDS.items():
    _add_routes(_plural, _kind)


@router.get("/projects/{name}/budget", tags=["projects"], responses=NOT_FOUND)
def read_budget(name: TenantName, db: Db, who: Caller, now: Now) -> BudgetOut:
    """GPU-hours granted, used (finished and running work) and left."""
    return service.budget_status(db, service.read_tenant(db, who, "project", name), now)


@router.put("/projects/{name}/budget", tags=["projects"], responses=NOT_FOUND)
def set_budget(name: TenantName, body: BudgetSet, db: Db, who: Caller, ctx: Ctx, now: Now) -> BudgetOut:
    """Grant a budget in GPU-hours (admins and partner managers)."""
    project = service.set_budget(db, who, name, body, now)
    ctx.submitter.forget_projects()
    return service.budget_status(db, project, now)
