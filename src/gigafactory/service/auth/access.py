"""Who is calling, and what they may do on which tenant.

A :class:`Principal` is resolved from the bearer token once per request. Permission
checks walk a tenant's short ancestry (project → programme → partner): a role held on
any ancestor applies below it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import ColumnElement, SQLColumnExpression, or_, select
from sqlalchemy.orm import Session, aliased

from gigafactory.service.auth.roles import CAPS, Cap, Role
from gigafactory.service.errors import Forbidden, NotFound
from gigafactory.service.tenants.models import Tenant


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller: a user and its grants ``(tenant id or None, role)``."""

    user_id: int
    name: str
    grants: tuple[tuple[int | None, Role], ...]
    token_id: int | None = None

    @property
    def is_admin(self) -> bool:
        return any(r is Role.ADMIN for _, r in self.grants)

    def roles_on(self, chain: Iterable[int]) -> set[Role]:
        """Roles that apply on a tenant whose ancestry (itself included) is ``chain``."""
        ids = set(chain)
        return {r for t, r in self.grants if t is None or t in ids}

    def can(self, cap: Cap, chain: Iterable[int]) -> bool:
        return any(cap in CAPS[r] for r in self.roles_on(chain))

    def facility_wide(self, cap: Cap) -> bool:
        """True when a facility-wide grant gives ``cap`` everywhere."""
        return any(t is None and cap in CAPS[r] for t, r in self.grants)


def tenant_chain(db: Session, tenant_id: int) -> tuple[int, ...]:
    """The tenant and its ancestors, nearest first (at most project, programme, partner)."""
    parent = aliased(Tenant)
    row = db.execute(
        select(Tenant.id, Tenant.parent_id, parent.parent_id)
        .outerjoin(parent, parent.id == Tenant.parent_id)
        .where(Tenant.id == tenant_id)
    ).first()
    if row is None:
        return ()
    return tuple(i for i in row if i is not None)


def require(principal: Principal, cap: Cap, chain: Iterable[int], what: str) -> None:
    """Raise 403 unless ``principal`` has ``cap`` on the tenant with ancestry ``chain``."""
    if not principal.can(cap, chain):
        raise Forbidden(f"{principal.name} may not {cap.value.replace('-', ' ')} {what}")


def require_admin(principal: Principal, what: str) -> None:
    if not principal.is_admin:
        raise Forbidden(f"only an admin may {what}")


def visible_projects(db: Session, principal: Principal, cap: Cap = Cap.READ) -> list[int] | None:
    """Ids of projects where ``principal`` has ``cap``; ``None`` means all of them."""
    if principal.facility_wide(cap):
        return None
    scopes = [t for t, r in principal.grants if t is not None and cap in CAPS[r]]
    if not scopes:
        return []
    parent = aliased(Tenant)
    q = (
        select(Tenant.id)
        .outerjoin(parent, parent.id == Tenant.parent_id)
        .where(Tenant.kind == "project")
        .where(
            or_(
                Tenant.id.in_(scopes),
                Tenant.parent_id.in_(scopes),
                parent.parent_id.in_(scopes),
            )
        )
    )
    return sorted(db.scalars(q))


def visible_project_id(db: Session, principal: Principal, project: str) -> int:
    """Id of the project named ``project`` if ``principal`` may read it; otherwise 404
    (a project one may not see does not exist, as far as one can tell)."""
    pid = db.scalar(select(Tenant.id).where(Tenant.name == project, Tenant.kind == "project"))
    visible = visible_projects(db, principal)
    if pid is None or (visible is not None and pid not in visible):
        raise NotFound(f"no project {project!r}")
    return pid


def project_scope(
    db: Session, principal: Principal, column: SQLColumnExpression[int], project: str | None
) -> ColumnElement[bool] | None:
    """The condition that keeps rows whose project id (``column``) ``principal`` may
    read: the one ``project`` named (404 when not visible), else every visible one;
    ``None`` when nothing needs filtering (facility-wide readers)."""
    if project is not None:
        return column == visible_project_id(db, principal, project)
    visible = visible_projects(db, principal)
    return None if visible is None else column.in_(visible)


def visible_tenants(db: Session, principal: Principal) -> list[int] | None:
    """Ids of every tenant (any kind) that ``principal`` may read; ``None`` means all.

    A grant on a tenant shows that tenant, its subtree and its ancestors (so a project
    member can see which programme and partner the project belongs to).
    """
    if principal.facility_wide(Cap.READ):
        return None
    scopes = [t for t, _ in principal.grants if t is not None]
    if not scopes:
        return []
    parent = aliased(Tenant)
    below = select(Tenant.id).outerjoin(parent, parent.id == Tenant.parent_id).where(
        or_(Tenant.id.in_(scopes), Tenant.parent_id.in_(scopes), parent.parent_id.in_(scopes))
    )
    ids = set(db.scalars(below))
    for s in scopes:
        ids.update(tenant_chain(db, s))
    return sorted(ids)

