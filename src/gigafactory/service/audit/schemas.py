"""Response bodies for the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from gigafactory.service.common import Out


class AuditOut(Out):
    id: int
    at: datetime
    actor: str
    action: str
    target: str
    detail: dict[str, Any]
