"""Write and read the audit log. Writers call :func:`record` inside their own transaction,
so a change and its audit entry commit or roll back together."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, insert, select
from sqlalchemy.orm import Session

from gigafactory.service.audit.models import AuditEntry

_INSERT = insert(cast(Table, AuditEntry.__table__))


def record(
    db: Session, actor: str, action: str, target: str, now: datetime, **detail: Any
) -> None:
    """Add one audit entry (who, what, on which object, when, with which parameters)."""
    db.execute(_INSERT, {"at": now, "actor": actor, "action": action, "target": target,
                         "detail": detail})


def entries(
    db: Session,
    *,
    limit: int,
    before: int | None = None,
    actor: str | None = None,
    action: str | None = None,
) -> list[AuditEntry]:
    """Newest first, keyset-paginated on ``id``."""
    q = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if before is not None:
        q = q.where(AuditEntry.id < before)
    if actor is not None:
        q = q.where(AuditEntry.actor == actor)
    if action is not None:
        q = q.where(AuditEntry.action == action)
    return list(db.scalars(q))
