"""A small test-side wrapper around the API: tokens, a standard share tree, submissions."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from httpx import Response

from gigafactory.service.auth.roles import Role
from gigafactory.service.bootstrap import create_user_with_token, ensure_admin
from gigafactory.service.db import transaction
from gigafactory.service.deps import ServiceContext
from gigafactory.service.tenants.models import Tenant

#: partners → programmes → projects used by most tests (dev-32 has 32 GPUs).
TREE: list[tuple[str, str, str | None, int]] = [
    ("partners", "eu", None, 16),
    ("partners", "host", None, 8),
    ("partners", "investor", None, 8),
    ("programmes", "eu-ai", "eu", 16),
    ("programmes", "host-research", "host", 8),
    ("programmes", "inv-prod", "investor", 8),
    ("projects", "alpha", "eu-ai", 8),
    ("projects", "beta", "eu-ai", 8),
    ("projects", "gamma", "host-research", 8),
    ("projects", "delta", "inv-prod", 8),
]


class Api:
    def __init__(self, client: TestClient, clock: Any, ctx: ServiceContext) -> None:
        self.client = client
        self.clock = clock
        self.ctx = ctx
        with ctx.sessions() as db:
            token = ensure_admin(db, clock())
        assert token is not None
        self.admin = token

    @staticmethod
    def h(token: str, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}", **extra}

    def get(self, path: str, token: str, **kw: Any) -> Response:
        return self.client.get(path, headers=self.h(token), **kw)

    def post(self, path: str, token: str, json: Any = None, **kw: Any) -> Response:
        headers = {**self.h(token), **kw.pop("headers", {})}
        return self.client.post(path, headers=headers, json=json, **kw)

    def tree(self) -> None:
        for plural, name, parent, guarantee in TREE:
            body: dict[str, Any] = {"name": name, "guarantee": guarantee}
            if parent:
                body["parent"] = parent
            r = self.post(f"/v1/{plural}", self.admin, body)
            assert r.status_code == 201, r.text

    def user(self, name: str, *grants: tuple[str | None, str]) -> str:
        """Create a user with roles ``(tenant name or None, role)``; return its token."""
        with transaction(self.ctx.sessions) as db:
            resolved: list[tuple[int | None, Role]] = []
            for tenant, role in grants:
                tid = None
                if tenant is not None:
                    t = db.query(Tenant).filter(Tenant.name == tenant).one()
                    tid = t.id
                resolved.append((tid, Role(role)))
            _, raw = create_user_with_token(db, name, self.clock(), grants=resolved)
        return raw

    def submit(self, token: str, project: str, gpus: int = 1, **kw: Any) -> Response:
        body = {"project": project, "gpus": gpus, "command": ["python", "train.py"], **kw}
        headers = kw.pop("headers", None) or {}
        body.pop("headers", None)
        return self.post("/v1/jobs", token, body, headers=headers)

    def job(self, token: str, project: str, gpus: int = 1, **kw: Any) -> dict[str, Any]:
        r = self.submit(token, project, gpus, **kw)
        assert r.status_code in (200, 201), r.text
        data: dict[str, Any] = r.json()
        return data
