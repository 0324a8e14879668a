"""The share tree in the database: create/change/delete tenants, validated by the core.

Every change is checked by building the whole :class:`gigafactory.core.shares.ShareTree`
with the change applied, so the database can never hold a tree the scheduler rejects.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from gigafactory.core.shares import ShareTree, TenantKind, TenantSpec
from gigafactory.service.audit.service import record
from gigafactory.service.auth.access import (
    Principal,
    require,
    require_admin,
    tenant_chain,
    visible_tenants,
)
from gigafactory.service.auth.roles import Cap
from gigafactory.service.errors import Conflict, Invalid, NotFound
from gigafactory.service.jobs.models import Job
from gigafactory.service.tenants.models import Tenant
from gigafactory.service.tenants.schemas import (
    BudgetOut,
    BudgetSet,
    PartnerCreate,
    TenantCreate,
    TenantOut,
    TenantUpdate,
)

#: The kind a tenant's parent must have.
PARENT_KIND: dict[str, str | None] = {"partner": None, "programme": "partner", "project": "programme"}
ACTIVE = ("starting", "running", "preempting")


def spec_of(t: Tenant, names: dict[int, str]) -> TenantSpec:
    return TenantSpec(
        name=t.name,
        kind=TenantKind(t.kind),
        parent=names[t.parent_id] if t.parent_id is not None else None,
        guarantee=t.guarantee,
        borrow_limit=t.borrow_limit,
        lend_limit=t.lend_limit,
        weight=t.weight,
        tenant_class=t.tenant_class,
    )


def all_tenants(db: Session) -> list[Tenant]:
    return list(db.scalars(select(Tenant).order_by(Tenant.id)))


def share_tree(tenants: list[Tenant]) -> ShareTree:
    """The core's share tree for these rows (as stored; always valid)."""
    names = {t.id: t.name for t in tenants}
    return ShareTree(spec_of(t, names) for t in tenants)


def _validate(specs: list[TenantSpec], facility_gpus: int) -> None:
    """Build the tree from proposed specs; turn the core's errors into 422s."""
    try:
        ShareTree(specs)
    except ValueError as exc:
        msg = str(exc)
        field = "guarantee" if "guarantee" in msg else "parent" if "parent" in msg else "name"
        raise Invalid(["body", field], msg) from None
    total = sum(t.guarantee for t in specs if t.parent is None)
    if total > facility_gpus:
        raise Invalid(
            ["body", "guarantee"],
            f"partners' guarantees would total {total} GPUs, more than the facility's "
            f"{facility_gpus}",
        )


def get_tenant(db: Session, kind: str, name: str) -> Tenant:
    t = db.scalar(select(Tenant).where(Tenant.name == name, Tenant.kind == kind))
    if t is None:
        raise NotFound(f"no {kind} {name!r}")
    return t


def _parent_name(db: Session, t: Tenant) -> str | None:
    if t.parent_id is None:
        return None
    p = db.get(Tenant, t.parent_id)
    return p.name if p is not None else None


def tenant_out(db: Session, t: Tenant, now: datetime, budget: bool = False) -> TenantOut:
    out = TenantOut(
        name=t.name,
        kind=t.kind,
        parent=_parent_name(db, t),
        title=t.title,
        guarantee=t.guarantee,
        borrow_limit=t.borrow_limit,
        lend_limit=t.lend_limit,
        weight=t.weight,
        tenant_class=t.tenant_class,
        created_at=t.created_at,
    )
    if budget and t.kind == "project":
        out.budget = budget_status(db, t, now)
    return out


def read_tenant(db: Session, who: Principal, kind: str, name: str) -> Tenant:
    """The tenant if ``who`` may see it; 404 otherwise (existence is not revealed)."""
    t = get_tenant(db, kind, name)
    visible = visible_tenants(db, who)
    if visible is not None and t.id not in visible:
        raise NotFound(f"no {kind} {name!r}")
    return t


def list_tenants(db: Session, who: Principal, kind: str, parent: str | None) -> list[Tenant]:
    q = select(Tenant).where(Tenant.kind == kind).order_by(Tenant.name)
    if parent is not None:
        p = db.scalar(select(Tenant).where(Tenant.name == parent))
        if p is None:
            return []
        q = q.where(Tenant.parent_id == p.id)
    visible = visible_tenants(db, who)
    if visible is not None:
        q = q.where(Tenant.id.in_(visible))
    return list(db.scalars(q))


def create_tenant(
    db: Session,
    who: Principal,
    kind: str,
    body: PartnerCreate | TenantCreate,
    facility_gpus: int,
    now: datetime,
) -> Tenant:
    require_admin(who, f"create a {kind}")
    want_parent = PARENT_KIND[kind]
    parent: Tenant | None = None
    if want_parent is not None:
        assert isinstance(body, TenantCreate)
        parent = db.scalar(select(Tenant).where(Tenant.name == body.parent))
        if parent is None or parent.kind != want_parent:
            raise Invalid(["body", "parent"], f"no {want_parent} named {body.parent!r}")
    if db.scalar(select(Tenant.id).where(Tenant.name == body.name)) is not None:
        raise Conflict(f"a tenant named {body.name!r} already exists (names are facility-wide)")
    t = Tenant(
        name=body.name,
        kind=kind,
        parent_id=parent.id if parent else None,
        title=body.title,
        guarantee=body.guarantee,
        borrow_limit=body.borrow_limit,
        lend_limit=body.lend_limit,
        weight=body.weight,
        tenant_class=body.tenant_class,
        created_at=now,
        updated_at=now,
    )
    rows = all_tenants(db)
    names = {r.id: r.name for r in rows}
    proposed = TenantSpec(
        name=t.name,
        kind=TenantKind(kind),
        parent=parent.name if parent else None,
        guarantee=t.guarantee,
        borrow_limit=t.borrow_limit,
        lend_limit=t.lend_limit,
        weight=t.weight,
        tenant_class=t.tenant_class,
    )
    _validate([*(spec_of(r, names) for r in rows), proposed], facility_gpus)
    db.add(t)
    db.flush()
    record(db, who.name, f"{kind}.create", f"{kind}:{t.name}", now,
           **body.model_dump(exclude={"name"}))
    db.commit()
    return t


def update_tenant(
    db: Session,
    who: Principal,
    kind: str,
    name: str,
    body: TenantUpdate,
    facility_gpus: int,
    now: datetime,
) -> Tenant:
    t = read_tenant(db, who, kind, name)
    require_admin(who, f"change a {kind}")
    changes = {k: getattr(body, k) for k in body.model_fields_set}
    for k in ("title", "guarantee", "weight"):
        if k in changes and changes[k] is None:
            raise Invalid(["body", k], f"{k} cannot be null")
    for k, v in changes.items():
        setattr(t, k, v)
    rows = all_tenants(db)  # ``t`` is among them, with the changes applied
    names = {r.id: r.name for r in rows}
    try:
        _validate([spec_of(r, names) for r in rows], facility_gpus)
    except Invalid:
        db.rollback()
        raise
    t.updated_at = now
    record(db, who.name, f"{kind}.update", f"{kind}:{name}", now, **changes)
    db.commit()
    return t


def delete_tenant(db: Session, who: Principal, kind: str, name: str, now: datetime) -> None:
    t = read_tenant(db, who, kind, name)
    require_admin(who, f"delete a {kind}")
    if db.scalar(select(Tenant.id).where(Tenant.parent_id == t.id).limit(1)) is not None:
        raise Conflict(f"{kind} {name!r} still has children; delete them first")
    if db.scalar(select(Job.id).where(Job.project_id == t.id).limit(1)) is not None:
        raise Conflict(f"{kind} {name!r} has jobs; it is kept for the ledger")
    db.delete(t)
    record(db, who.name, f"{kind}.delete", f"{kind}:{name}", now)
    db.commit()


# --- budgets ----------------------------------------------------------------------------


def budget_status(db: Session, project: Tenant, now: datetime) -> BudgetOut:
    """A project's budget: granted, used by finished and running work, what is left."""
    running = db.execute(
        select(Job.gpus, Job.started_at).where(
            Job.project_id == project.id, Job.active.is_(True), Job.started_at.is_not(None)
        )
    ).all()
    live = sum(g * max(0.0, (now - s).total_seconds()) for g, s in running if s is not None) / 3600.0
    used = project.budget_used_gpu_hours
    granted = project.budget_gpu_hours
    remaining: float | None = None
    exhausted = False
    reason: str | None = None
    if granted is not None:
        remaining = max(0.0, granted - used - live)
        if project.budget_expires_at is not None and project.budget_expires_at <= now:
            exhausted, remaining = True, 0.0
            reason = (
                f"project {project.name}: its budget expired at "
                f"{project.budget_expires_at.isoformat()}"
            )
        elif used + live >= granted:
            exhausted = True
            reason = (
                f"project {project.name}: its budget of {granted:g} GPU-hours is exhausted "
                f"({used + live:.2f} used)"
            )
    return BudgetOut(
        project=project.name,
        gpu_hours=granted,
        expires_at=project.budget_expires_at,
        used_gpu_hours=used,
        running_gpu_hours=live,
        remaining_gpu_hours=remaining,
        exhausted=exhausted,
        reason=reason,
    )


def set_budget(db: Session, who: Principal, name: str, body: BudgetSet, now: datetime) -> Tenant:
    project = read_tenant(db, who, "project", name)
    require(who, Cap.MANAGE_BUDGET, tenant_chain(db, project.id), f"the budget of {name}")
    project.budget_gpu_hours = body.gpu_hours
    project.budget_expires_at = body.expires_at
    if body.reset_used:
        project.budget_used_gpu_hours = 0.0
    record(db, who.name, "project.budget", f"project:{name}", now,
           gpu_hours=body.gpu_hours,
           expires_at=body.expires_at.isoformat() if body.expires_at else None,
           reset_used=body.reset_used)
    db.commit()
    return project
