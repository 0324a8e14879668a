"""HTTP routes for the caller, users, memberships and tokens. Logic lives in the service."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from gigafactory.service.auth import service
from gigafactory.service.auth.schemas import (
    Me,
    MembershipCreate,
    MembershipOut,
    TokenCreate,
    TokenCreated,
    TokenOut,
    UserCreate,
    UserOut,
    UserUpdate,
)
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

router = APIRouter(route_class=ServiceRoute, prefix="/v1", responses=AUTH_ERRORS)
Id = Annotated[int, Path(ge=1, le=2**62)]
UserName = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9._-]*$")]


@router.get("/me", tags=["auth"])
def me(db: Db, who: Caller) -> Me:
    """Who the token belongs to, and its roles."""
    user = service.get_user(db, who.name)
    return Me(user=UserOut.model_validate(user), is_admin=who.is_admin,
              memberships=service.memberships_of(db, who.user_id))


@router.get("/users", tags=["auth"])
def list_users(db: Db, who: Caller) -> list[UserOut]:
    """All users (admins), or just oneself."""
    return [UserOut.model_validate(u) for u in service.list_users(db, who)]


@router.post("/users", status_code=201, tags=["auth"], responses=CONFLICT)
def create_user(body: UserCreate, db: Db, who: Caller, now: Now) -> UserOut:
    return UserOut.model_validate(service.create_user(db, who, body, now))


@router.get("/users/{name}", tags=["auth"], responses=NOT_FOUND)
def read_user(name: UserName, db: Db, who: Caller) -> UserOut:
    return UserOut.model_validate(service.read_user(db, who, name))


@router.patch("/users/{name}", tags=["auth"], responses={**NOT_FOUND, **CONFLICT})
def update_user(
    name: UserName, body: UserUpdate, db: Db, who: Caller, ctx: Ctx, now: Now
) -> UserOut:
    user = service.update_user(db, who, name, body, now)
    ctx.auth_cache.clear()
    return UserOut.model_validate(user)


@router.get("/memberships", tags=["auth"])
def list_memberships(
    db: Db,
    who: Caller,
    user: Annotated[Name | None, Query()] = None,
    tenant: Annotated[Name | None, Query()] = None,
) -> list[MembershipOut]:
    """Memberships the caller may see: its own, and those it may manage."""
    return service.list_memberships(db, who, user, tenant)


@router.post("/memberships", status_code=201, tags=["auth"], responses={**NOT_FOUND, **CONFLICT})
def create_membership(
    body: MembershipCreate, db: Db, who: Caller, ctx: Ctx, now: Now
) -> MembershipOut:
    """Grant a role on a tenant (or facility-wide, admins only)."""
    out = service.create_membership(db, who, body, now)
    ctx.auth_cache.clear()
    return out


@router.delete(
    "/memberships/{membership_id}",
    status_code=204,
    tags=["auth"],
    responses={**NOT_FOUND, **CONFLICT},
    response_class=Response,
)
def delete_membership(membership_id: Id, db: Db, who: Caller, ctx: Ctx, now: Now) -> Response:
    service.delete_membership(db, who, membership_id, now)
    ctx.auth_cache.clear()
    return Response(status_code=204)


@router.get("/tokens", tags=["auth"], responses=NOT_FOUND)
def list_tokens(
    db: Db, who: Caller, user: Annotated[Name | None, Query()] = None
) -> list[TokenOut]:
    """The caller's tokens (admins: anyone's, with ``user``). Secrets are never shown."""
    return service.list_tokens(db, who, user)


@router.post("/tokens", status_code=201, tags=["auth"], responses=NOT_FOUND)
def create_token(body: TokenCreate, db: Db, who: Caller, ctx: Ctx, now: Now) -> TokenCreated:
    """A new API token. The secret is in the answer and never again."""
    return service.create_token(db, who, body, ctx.settings.token_ttl_days, now)


@router.delete("/tokens/{token_id}", tags=["auth"], responses=NOT_FOUND)
def revoke_token(token_id: Id, db: Db, who: Caller, ctx: Ctx, now: Now) -> TokenOut:
    """Revoke a token at once; it can never be used again."""
    out = service.revoke_token(db, who, token_id, now)
    ctx.auth_cache.clear()
    return out
