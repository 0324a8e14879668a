"""Users, memberships and API tokens: creation, lookup, revocation and permission rules."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from gigafactory.service.audit.service import record
from gigafactory.service.auth.access import Principal, require, require_admin, tenant_chain
from gigafactory.service.auth.cache import AuthCache
from gigafactory.service.auth.models import ApiToken, Membership, User
from gigafactory.service.auth.roles import GRANTS, SCOPES, Cap, Role
from gigafactory.service.auth.schemas import (
    MembershipCreate,
    MembershipOut,
    TokenCreate,
    TokenCreated,
    TokenOut,
    UserCreate,
    UserUpdate,
)
from gigafactory.service.errors import Conflict, Forbidden, Invalid, NotFound, Unauthorized
from gigafactory.service.tenants.models import Tenant

TOKEN_PREFIX = "gf_"
#: Refresh ``last_used_at`` at most this often, so reads stay read-only in the common case.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


# --- tokens -----------------------------------------------------------------------------


def issue_token(
    db: Session, user: User, name: str, expires_at: datetime, now: datetime
) -> tuple[ApiToken, str]:
    """Create a token for ``user``; returns the row and the plaintext (shown once)."""
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(
        user_id=user.id,
        name=name,
        token_hash=hash_token(raw),
        prefix=raw[: len(TOKEN_PREFIX) + 6],
        created_at=now,
        expires_at=expires_at,
    )
    db.add(row)
    db.flush()
    return row, raw


_TOKEN_Q = (
    select(ApiToken, User)
    .join(User, User.id == ApiToken.user_id)
    .where(ApiToken.token_hash == bindparam("h"))
)
_GRANTS_Q = select(Membership.tenant_id, Membership.role).where(
    Membership.user_id == bindparam("u")
)


def authenticate(
    db: Session, raw: str | None, now: datetime, cache: AuthCache | None = None
) -> Principal:
    """Resolve a bearer token to a :class:`Principal`, or raise 401 saying why."""
    if not raw:
        raise Unauthorized("missing bearer token; pass 'Authorization: Bearer <token>'")
    digest = hash_token(raw)
    if cache is not None:
        hit = cache.get(digest, now)
        if hit is not None:
            return hit
    row = db.execute(_TOKEN_Q, {"h": digest}).first()
    if row is None:
        raise Unauthorized("invalid token")
    token, user = row
    if token.revoked_at is not None:
        raise Unauthorized(f"token {token.prefix}… was revoked")
    if token.expires_at <= now:
        raise Unauthorized(f"token {token.prefix}… expired at {token.expires_at.isoformat()}")
    if not user.active:
        raise Unauthorized(f"user {user.name} is deactivated")
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
        token.last_used_at = now
    grants = db.execute(_GRANTS_Q, {"u": user.id}).all()
    # End the transaction: authentication runs as its own dependency, and a connection
    # held until the endpoint gets a thread could starve a small pool (SQLite has one).
    db.commit()
    principal = Principal(
        user_id=user.id,
        name=user.name,
        grants=tuple((t, Role(r)) for t, r in grants),
        token_id=token.id,
    )
    if cache is not None:
        cache.put(digest, token.expires_at, principal)
    return principal


def _token_out(token: ApiToken, user_name: str, secret: str | None = None) -> TokenOut:
    data = {
        "id": token.id,
        "user": user_name,
        "name": token.name,
        "prefix": token.prefix,
        "created_at": token.created_at,
        "expires_at": token.expires_at,
        "revoked_at": token.revoked_at,
        "last_used_at": token.last_used_at,
    }
    if secret is not None:
        return TokenCreated(**data, token=secret)
    return TokenOut(**data)


def create_token(
    db: Session, who: Principal, body: TokenCreate, default_days: int, now: datetime
) -> TokenCreated:
    user = get_user(db, body.user) if body.user else db.get(User, who.user_id)
    assert user is not None
    if user.id != who.user_id:
        require_admin(who, "create tokens for other users")
    days = body.expires_in_days or default_days
    token, raw = issue_token(db, user, body.name, now + timedelta(days=days), now)
    record(db, who.name, "token.create", f"token:{token.id}", now, user=user.name, days=days)
    db.commit()
    out = _token_out(token, user.name, raw)
    assert isinstance(out, TokenCreated)
    return out


def list_tokens(db: Session, who: Principal, user: str | None) -> list[TokenOut]:
    q = select(ApiToken, User.name).join(User, User.id == ApiToken.user_id).order_by(ApiToken.id)
    if user is not None:
        target = get_user(db, user)
        if target.id != who.user_id:
            require_admin(who, "list other users' tokens")
        q = q.where(ApiToken.user_id == target.id)
    elif not who.is_admin:
        q = q.where(ApiToken.user_id == who.user_id)
    return [_token_out(t, n) for t, n in db.execute(q)]


def revoke_token(db: Session, who: Principal, token_id: int, now: datetime) -> TokenOut:
    row = db.execute(
        select(ApiToken, User.name).join(User, User.id == ApiToken.user_id).where(
            ApiToken.id == token_id
        )
    ).first()
    if row is None or (row[0].user_id != who.user_id and not who.is_admin):
        raise NotFound(f"no token {token_id}")
    token, name = row
    if token.revoked_at is None:
        token.revoked_at = now
        record(db, who.name, "token.revoke", f"token:{token.id}", now, user=name)
        db.commit()
    return _token_out(token, name)


# --- users ------------------------------------------------------------------------------


def get_user(db: Session, name: str) -> User:
    user = db.scalar(select(User).where(User.name == name))
    if user is None:
        raise NotFound(f"no user {name!r}")
    return user


def create_user(db: Session, who: Principal, body: UserCreate, now: datetime) -> User:
    require_admin(who, "create users")
    if db.scalar(select(User.id).where(User.name == body.name)) is not None:
        raise Conflict(f"user {body.name!r} already exists")
    user = User(name=body.name, email=body.email, created_at=now)
    db.add(user)
    db.flush()
    record(db, who.name, "user.create", f"user:{user.name}", now, email=body.email)
    db.commit()
    return user


def update_user(db: Session, who: Principal, name: str, body: UserUpdate, now: datetime) -> User:
    require_admin(who, "change users")
    user = get_user(db, name)
    changes = body.model_dump(exclude_none=True)
    if user.id == who.user_id and changes.get("active") is False:
        raise Conflict("an admin cannot deactivate themself")
    for key, value in changes.items():
        setattr(user, key, value)
    record(db, who.name, "user.update", f"user:{user.name}", now, **changes)
    db.commit()
    return user


def list_users(db: Session, who: Principal) -> list[User]:
    if who.is_admin:
        return list(db.scalars(select(User).order_by(User.id)))
    user = db.get(User, who.user_id)
    return [user] if user is not None else []


def read_user(db: Session, who: Principal, name: str) -> User:
    user = get_user(db, name)
    if user.id != who.user_id and not who.is_admin:
        raise NotFound(f"no user {name!r}")
    return user


# --- memberships ------------------------------------------------------------------------


def _membership_out(m: Membership, user: str, tenant: str | None) -> MembershipOut:
    return MembershipOut(id=m.id, user=user, tenant=tenant, role=Role(m.role), created_at=m.created_at)


def memberships_of(db: Session, user_id: int) -> list[MembershipOut]:
    q = (
        select(Membership, User.name, Tenant.name)
        .join(User, User.id == Membership.user_id)
        .outerjoin(Tenant, Tenant.id == Membership.tenant_id)
        .where(Membership.user_id == user_id)
        .order_by(Membership.id)
    )
    return [_membership_out(m, u, t) for m, u, t in db.execute(q)]


def _may_grant(who: Principal, role: Role, chain: tuple[int, ...]) -> bool:
    if who.is_admin:
        return True
    return any(role in GRANTS[r] for r in who.roles_on(chain)) and who.can(
        Cap.MANAGE_MEMBERS, chain
    )


def create_membership(
    db: Session, who: Principal, body: MembershipCreate, now: datetime
) -> MembershipOut:
    user = get_user(db, body.user)
    tenant: Tenant | None = None
    if body.tenant is not None:
        tenant = db.scalar(select(Tenant).where(Tenant.name == body.tenant))
        if tenant is None:
            raise NotFound(f"no tenant {body.tenant!r}")
    kind = tenant.kind if tenant is not None else None
    if kind not in SCOPES[body.role]:
        where = "facility-wide" if kind is None else f"on a {kind}"
        allowed = sorted("facility-wide" if k is None else k for k in SCOPES[body.role])
        raise Invalid(
            ["body", "tenant"],
            f"role {body.role.value} cannot be granted {where}; allowed: {', '.join(allowed)}",
        )
    chain = tenant_chain(db, tenant.id) if tenant is not None else ()
    if tenant is None and not who.is_admin:
        raise Forbidden("only an admin may grant facility-wide roles")
    if not _may_grant(who, body.role, chain):
        raise Forbidden(f"{who.name} may not grant {body.role.value} on {body.tenant}")
    exists = db.scalar(
        select(Membership.id).where(
            Membership.user_id == user.id,
            Membership.role == body.role.value,
            Membership.tenant_id.is_(None) if tenant is None else Membership.tenant_id == tenant.id,
        )
    )
    if exists is not None:
        raise Conflict(f"{user.name} already has {body.role.value} on {body.tenant or 'facility'}")
    m = Membership(user_id=user.id, tenant_id=tenant.id if tenant else None, role=body.role.value,
                   created_at=now)
    db.add(m)
    db.flush()
    record(db, who.name, "membership.create", f"membership:{m.id}", now,
           user=user.name, tenant=body.tenant, role=body.role.value)
    db.commit()
    return _membership_out(m, user.name, body.tenant)


def list_memberships(
    db: Session, who: Principal, user: str | None, tenant: str | None
) -> list[MembershipOut]:
    q = (
        select(Membership, User.name, Tenant.name)
        .join(User, User.id == Membership.user_id)
        .outerjoin(Tenant, Tenant.id == Membership.tenant_id)
        .order_by(Membership.id)
    )
    if user is not None:
        q = q.where(User.name == user)
    if tenant is not None:
        q = q.where(Tenant.name == tenant)
    out = []
    for m, u, t in db.execute(q):
        if who.is_admin or m.user_id == who.user_id or (
            m.tenant_id is not None and who.can(Cap.MANAGE_MEMBERS, tenant_chain(db, m.tenant_id))
        ):
            out.append(_membership_out(m, u, t))
    return out


def delete_membership(db: Session, who: Principal, membership_id: int, now: datetime) -> None:
    row = db.execute(
        select(Membership, User.name, Tenant.name)
        .join(User, User.id == Membership.user_id)
        .outerjoin(Tenant, Tenant.id == Membership.tenant_id)
        .where(Membership.id == membership_id)
    ).first()
    if row is None:
        raise NotFound(f"no membership {membership_id}")
    m, user, tenant = row
    chain = tenant_chain(db, m.tenant_id) if m.tenant_id is not None else ()
    visible = who.is_admin or m.user_id == who.user_id or (chain and who.can(Cap.READ, chain))
    if not visible:
        raise NotFound(f"no membership {membership_id}")
    if not (who.is_admin or (chain and _may_grant(who, Role(m.role), chain))):
        raise Forbidden(f"{who.name} may not remove {m.role} on {tenant or 'facility'}")
    if m.user_id == who.user_id and m.role == Role.ADMIN.value:
        raise Conflict("an admin cannot remove their own admin role")
    db.delete(m)
    record(db, who.name, "membership.delete", f"membership:{m.id}", now,
           user=user, tenant=tenant, role=m.role)
    db.commit()


def require_read(who: Principal, db: Session, tenant_id: int, what: str) -> None:
    require(who, Cap.READ, tenant_chain(db, tenant_id), what)
