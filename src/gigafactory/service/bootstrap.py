"""First-start helpers: migrate the database and create the first admin with a token."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from gigafactory.service import migrate
from gigafactory.service.audit.service import record
from gigafactory.service.auth.models import Membership, User
from gigafactory.service.auth.roles import Role
from gigafactory.service.auth.service import issue_token


def prepare_database(engine: Engine) -> None:
    """Create or upgrade the schema to the newest migration."""
    migrate.upgrade(engine)


def create_user_with_token(
    db: Session,
    name: str,
    now: datetime,
    *,
    grants: Sequence[tuple[int | None, Role]] = (),
    days: int = 90,
    actor: str = "bootstrap",
) -> tuple[User, str]:
    """A user, its memberships and one token (plaintext returned). Caller commits."""
    user = User(name=name, email="", active=True, created_at=now)
    db.add(user)
    db.flush()
    for tenant_id, role in grants:
        db.add(Membership(user_id=user.id, tenant_id=tenant_id, role=role.value, created_at=now))
    _, raw = issue_token(db, user, f"{name} (bootstrap)", now + timedelta(days=days), now)
    record(db, actor, "user.create", f"user:{name}", now, roles=[r.value for _, r in grants])
    return user, raw


def ensure_admin(db: Session, now: datetime, name: str = "admin") -> str | None:
    """On an empty database, create user ``name`` as admin; return its token (once)."""
    if db.scalar(select(func.count()).select_from(User)):
        return None
    _, raw = create_user_with_token(db, name, now, grants=[(None, Role.ADMIN)])
    db.commit()
    return raw
