"""Request and response bodies for users, memberships and tokens."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field, StringConstraints

from gigafactory.service.auth.roles import Role
from gigafactory.service.common import Name, Out, Strict, Text200

Email = Annotated[str, StringConstraints(max_length=254, pattern=r"^([^@\s\x00]+@[^@\s\x00]+)?$")]


class UserCreate(Strict):
    name: Name
    email: Email = ""


class UserUpdate(Strict):
    email: Email | None = None
    active: bool | None = None


class UserOut(Out):
    id: int
    name: str
    email: str
    active: bool
    created_at: datetime


class MembershipCreate(Strict):
    user: Name
    tenant: Name | None = Field(
        default=None, description="partner, programme or project; omit for facility-wide"
    )
    role: Annotated[Role, Field(strict=False)]


class MembershipOut(Out):
    id: int
    user: str
    tenant: str | None
    role: Role
    created_at: datetime


class TokenCreate(Strict):
    name: Text200 = ""
    expires_in_days: int | None = Field(default=None, ge=1, le=3650)
    user: Name | None = Field(default=None, description="admins may create tokens for others")


class TokenOut(Out):
    id: int
    user: str
    name: str
    prefix: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


class TokenCreated(TokenOut):
    token: str = Field(description="the secret; shown only once")


class Me(Out):
    user: UserOut
    is_admin: bool
    memberships: list[MembershipOut]
