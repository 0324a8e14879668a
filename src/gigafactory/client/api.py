"""The typed client: one method per API operation, answers parsed into the service's own
response schemas (pure Pydantic), errors raised as :class:`ApiError` with the server's
message."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, TypeAdapter

from gigafactory.service.audit.schemas import AuditOut
from gigafactory.service.auth.schemas import Me, MembershipOut, TokenCreated, TokenOut, UserOut
from gigafactory.service.common import Page
from gigafactory.service.facility.schemas import FacilityOut
from gigafactory.service.jobs.schemas import JobDetail, JobOut, JobSubmit, LogChunk
from gigafactory.service.tenants.schemas import BudgetOut, TenantOut
from gigafactory.service.usage.schemas import GuaranteeLedgerOut, UsageRecordOut, UsageReport

M = TypeVar("M", bound=BaseModel)
PLURAL = {"partner": "partners", "programme": "programmes", "project": "projects"}


class ApiError(Exception):
    """A non-2xx answer. ``str()`` is one readable line (field paths for 422s)."""

    def __init__(self, status: int, detail: Any) -> None:
        self.status = status
        self.detail = detail
        super().__init__(self.message)

    @property
    def message(self) -> str:
        d = self.detail
        if isinstance(d, list):
            parts = []
            for item in d:
                loc = ".".join(str(x) for x in item.get("loc", []) if x != "body")
                parts.append(f"{loc}: {item.get('msg')}" if loc else str(item.get("msg")))
            return f"HTTP {self.status}: " + "; ".join(parts)
        return f"HTTP {self.status}: {d}"


class Client:
    """``Client(url, token)``; pass ``http`` to reuse an ``httpx.Client`` (tests pass a
    FastAPI TestClient)."""

    def __init__(
        self,
        url: str = "http://127.0.0.1:8000",
        token: str | None = None,
        *,
        timeout: float = 30.0,
        http: httpx.Client | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._own = http is None
        self.http = http or httpx.Client(base_url=url.rstrip("/"), timeout=timeout)
        self.headers = headers

    def close(self) -> None:
        if self._own:
            self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- plumbing ---------------------------------------------------------------------
    def _call(self, method: str, path: str, *, params: Any = None, json: Any = None,
              headers: dict[str, str] | None = None) -> httpx.Response:
        try:
            r = self.http.request(method, path, params=params, json=json,
                                  headers={**self.headers, **(headers or {})})
        except httpx.HTTPError as exc:
            raise ApiError(0, f"cannot reach the control plane: {exc}") from None
        if r.status_code >= 400:
            try:
                detail = r.json().get("detail", r.text)
            except ValueError:
                detail = r.text
            raise ApiError(r.status_code, detail)
        return r

    def _get(self, model: type[M], path: str, **params: Any) -> M:
        clean = {k: v for k, v in params.items() if v is not None}
        return model.model_validate(self._call("GET", path, params=clean).json())

    def _list(self, model: type[M], path: str, **params: Any) -> list[M]:
        clean = {k: v for k, v in params.items() if v is not None}
        return TypeAdapter(list[model]).validate_python(  # type: ignore[valid-type]
            self._call("GET", path, params=clean).json()
        )

    def _send(self, model: type[M], method: str, path: str, body: Any = None) -> M:
        return model.model_validate(self._call(method, path, json=body).json())

    # --- health, identity, facility -----------------------------------------------------
    def healthz(self) -> dict[str, Any]:
        data: dict[str, Any] = self._call("GET", "/healthz").json()
        return data

    def me(self) -> Me:
        return self._get(Me, "/v1/me")

    def facility(self, nodes: bool = False) -> FacilityOut:
        return self._get(FacilityOut, "/v1/facility", nodes=nodes)

    # --- jobs ---------------------------------------------------------------------------
    def submit(self, spec: JobSubmit | None = None, *, idempotency_key: str | None = None,
               **fields: Any) -> JobOut:
        """Submit ``spec`` (or the fields of a :class:`JobSubmit`)."""
        body = (spec or JobSubmit(**fields)).model_dump(mode="json", exclude_none=True)
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return JobOut.model_validate(self._call("POST", "/v1/jobs", json=body,
                                                headers=headers).json())

    def jobs(self, *, project: str | None = None, states: Sequence[str] = (),
             user: str | None = None, limit: int | None = None,
             cursor: int | None = None) -> Page[JobOut]:
        params: list[tuple[str, Any]] = [("state", s) for s in states]
        for key, value in (("project", project), ("user", user), ("limit", limit),
                           ("cursor", cursor)):
            if value is not None:
                params.append((key, value))
        return Page[JobOut].model_validate(self._call("GET", "/v1/jobs", params=params).json())

    def iter_jobs(self, **filters: Any) -> Iterator[JobOut]:
        """Every matching job, newest first, following the keyset cursor."""
        cursor = None
        while True:
            page = self.jobs(cursor=cursor, **filters)
            yield from page.items
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def job(self, job_id: int) -> JobDetail:
        return self._get(JobDetail, f"/v1/jobs/{job_id}")

    def _act(self, verb: str, job_id: int, reason: str) -> JobDetail:
        return self._send(JobDetail, "POST", f"/v1/jobs/{job_id}/{verb}", {"reason": reason})

    def cancel(self, job_id: int, reason: str = "") -> JobDetail:
        return self._act("cancel", job_id, reason)

    def hold(self, job_id: int, reason: str = "") -> JobDetail:
        return self._act("hold", job_id, reason)

    def release(self, job_id: int, reason: str = "") -> JobDetail:
        return self._act("release", job_id, reason)

    def requeue(self, job_id: int, reason: str = "") -> JobDetail:
        return self._act("requeue", job_id, reason)

    def logs(self, job_id: int, offset: int = 0, limit: int | None = None) -> LogChunk:
        return self._get(LogChunk, f"/v1/jobs/{job_id}/logs", offset=offset, limit=limit)

    def stream_logs(self, job_id: int, offset: int = 0, timeout: float = 3600) -> Iterator[str]:
        """Log text as it is written, until the job ends (server-side follow)."""
        params = {"offset": offset, "timeout": timeout}
        with self.http.stream("GET", f"/v1/jobs/{job_id}/logs/stream", params=params,
                              headers=self.headers, timeout=timeout + 30) as r:
            if r.status_code >= 400:
                r.read()
                raise ApiError(r.status_code, r.json().get("detail", r.text))
            yield from r.iter_text()

    # --- usage --------------------------------------------------------------------------
    def usage(self, *, project: str | None = None, partner: str | None = None,
              since: datetime | None = None, until: datetime | None = None) -> UsageReport:
        return self._get(UsageReport, "/v1/usage", project=project, partner=partner,
                         since=since.isoformat() if since else None,
                         until=until.isoformat() if until else None)

    def usage_records(self, *, project: str | None = None, job: int | None = None,
                      limit: int | None = None, cursor: int | None = None) -> Page[UsageRecordOut]:
        return self._get(Page[UsageRecordOut], "/v1/usage/records", project=project, job=job,
                         limit=limit, cursor=cursor)

    def guarantees(self, *, partner: str | None = None, since: datetime | None = None,
                   until: datetime | None = None) -> GuaranteeLedgerOut:
        return self._get(GuaranteeLedgerOut, "/v1/usage/guarantees", partner=partner,
                         since=since.isoformat() if since else None,
                         until=until.isoformat() if until else None)

    # --- tenants and budgets ------------------------------------------------------------
    def tenants(self, kind: str, parent: str | None = None) -> list[TenantOut]:
        return self._list(TenantOut, f"/v1/{PLURAL[kind]}", parent=parent)

    def tenant(self, kind: str, name: str) -> TenantOut:
        return self._get(TenantOut, f"/v1/{PLURAL[kind]}/{name}")

    def create_tenant(self, kind: str, **fields: Any) -> TenantOut:
        body = {k: v for k, v in fields.items() if v is not None}
        return self._send(TenantOut, "POST", f"/v1/{PLURAL[kind]}", body)

    def update_tenant(self, kind: str, name: str, **fields: Any) -> TenantOut:
        return self._send(TenantOut, "PATCH", f"/v1/{PLURAL[kind]}/{name}", fields)

    def delete_tenant(self, kind: str, name: str) -> None:
        self._call("DELETE", f"/v1/{PLURAL[kind]}/{name}")

    def budget(self, project: str) -> BudgetOut:
        return self._get(BudgetOut, f"/v1/projects/{project}/budget")

    def set_budget(self, project: str, gpu_hours: float | None,
                   expires_at: datetime | None = None, reset_used: bool = False) -> BudgetOut:
        body = {"gpu_hours": gpu_hours, "reset_used": reset_used,
                "expires_at": expires_at.isoformat() if expires_at else None}
        return self._send(BudgetOut, "PUT", f"/v1/projects/{project}/budget", body)

    # --- users, memberships, tokens, audit ----------------------------------------------
    def users(self) -> list[UserOut]:
        return self._list(UserOut, "/v1/users")

    def create_user(self, name: str, email: str = "") -> UserOut:
        return self._send(UserOut, "POST", "/v1/users", {"name": name, "email": email})

    def update_user(self, name: str, **fields: Any) -> UserOut:
        return self._send(UserOut, "PATCH", f"/v1/users/{name}", fields)

    def memberships(self, user: str | None = None, tenant: str | None = None) -> list[MembershipOut]:
        return self._list(MembershipOut, "/v1/memberships", user=user, tenant=tenant)

    def grant(self, user: str, role: str, tenant: str | None = None) -> MembershipOut:
        return self._send(MembershipOut, "POST", "/v1/memberships",
                          {"user": user, "role": role, "tenant": tenant})

    def revoke_membership(self, membership_id: int) -> None:
        self._call("DELETE", f"/v1/memberships/{membership_id}")

    def tokens(self, user: str | None = None) -> list[TokenOut]:
        return self._list(TokenOut, "/v1/tokens", user=user)

    def create_token(self, name: str = "", expires_in_days: int | None = None,
                     user: str | None = None) -> TokenCreated:
        body = {"name": name, "expires_in_days": expires_in_days, "user": user}
        return self._send(TokenCreated, "POST", "/v1/tokens",
                          {k: v for k, v in body.items() if v is not None})

    def revoke_token(self, token_id: int) -> TokenOut:
        return self._send(TokenOut, "DELETE", f"/v1/tokens/{token_id}")

    def audit(self, *, actor: str | None = None, action: str | None = None,
              limit: int | None = None, cursor: int | None = None) -> Page[AuditOut]:
        return self._get(Page[AuditOut], "/v1/audit", actor=actor, action=action, limit=limit,
                         cursor=cursor)
