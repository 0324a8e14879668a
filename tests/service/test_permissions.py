"""A user never sees or changes another project's jobs, logs or usage.

The matrix: every endpoint of the OpenAPI spec × callers holding each role somewhere
*else* (another project, programme or partner, or nothing at all) × requests aimed at
project ``alpha``'s objects. Each cell must be refused (403/404, or 422 for a submit
naming a project the caller cannot see) or, for lists, must leave alpha's objects out.
Afterwards nothing of alpha's has changed. A new endpoint without a row here fails
:func:`test_matrix_covers_every_endpoint`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from httpx import Response

from gigafactory.service.db import transaction
from gigafactory.service.tenants.models import Tenant
from gigafactory.service.usage.models import GuaranteeLedger, UsageRecord

from .helpers import Api

DENIED = {403, 404}
Check = Callable[[Response, dict[str, Any]], None]


def denied(r: Response, _w: dict[str, Any]) -> None:
    assert r.status_code in DENIED, f"{r.status_code}: {r.text}"


def denied_or_unknown(r: Response, _w: dict[str, Any]) -> None:
    assert r.status_code in DENIED | {422}, f"{r.status_code}: {r.text}"


def ok_without(*words: str) -> Check:
    """A 200 whose body never mentions alpha's objects."""

    def check(r: Response, w: dict[str, Any]) -> None:
        assert r.status_code == 200, r.text
        text = r.text
        for word in words:
            assert str(w.get(word, word)) not in text, f"{word} leaked: {text[:300]}"

    return check


def hidden_or_without_alpha(r: Response, _w: dict[str, Any]) -> None:
    """Ancestors of the caller's own projects are visible; alpha never is."""
    assert r.status_code in DENIED | {200}, f"{r.status_code}: {r.text}"
    if r.status_code == 200:
        assert '"alpha"' not in r.text, r.text[:300]


def ok(r: Response, _w: dict[str, Any]) -> None:
    assert r.status_code == 200, r.text


def no_alpha_jobs(r: Response, w: dict[str, Any]) -> None:
    assert r.status_code == 200, r.text
    assert all(j["project"] != "alpha" for j in r.json()["items"])
    assert w["job_id"] not in [j["id"] for j in r.json()["items"]]


def no_alpha_records(r: Response, _w: dict[str, Any]) -> None:
    assert r.status_code == 200, r.text
    assert all(x["project"] != "alpha" for x in r.json()["items"])


#: (method, OpenAPI path) → list of (concrete path, params, json, check)
Case = tuple[str, dict[str, Any] | None, Any, Check]


def cases(w: dict[str, Any]) -> dict[tuple[str, str], list[Case]]:
    job = w["job_id"]
    mid = w["membership_id"]
    tid = w["token_id"]
    tenant_cases: dict[tuple[str, str], list[Case]] = {}
    for plural, name in (("partners", "eu"), ("programmes", "eu-ai"), ("projects", "alpha")):
        tenant_cases[("get", f"/v1/{plural}")] = [(f"/v1/{plural}", None, None, ok_without('"alpha"'))]
        tenant_cases[("post", f"/v1/{plural}")] = [
            (f"/v1/{plural}", None, {"name": "intruder", **({} if plural == "partners" else
                                                             {"parent": "eu" if plural == "programmes" else "eu-ai"})}, denied)
        ]
        tenant_cases[("get", f"/v1/{plural}/{{name}}")] = [
            (f"/v1/{plural}/{name}", None, None, denied if plural == "projects" else hidden_or_without_alpha)
        ]
        tenant_cases[("patch", f"/v1/{plural}/{{name}}")] = [(f"/v1/{plural}/{name}", None, {"guarantee": 0}, denied)]
        tenant_cases[("delete", f"/v1/{plural}/{{name}}")] = [(f"/v1/{plural}/{name}", None, None, denied)]
    return {
        ("get", "/v1/me"): [("/v1/me", None, None, ok_without("owner", '"alpha"'))],
        ("get", "/v1/users"): [("/v1/users", None, None, ok_without("owner"))],
        ("post", "/v1/users"): [("/v1/users", None, {"name": "sneaky"}, denied)],
        ("get", "/v1/users/{name}"): [("/v1/users/owner", None, None, denied)],
        ("patch", "/v1/users/{name}"): [("/v1/users/owner", None, {"active": False}, denied)],
        ("get", "/v1/memberships"): [
            ("/v1/memberships", None, None, ok_without('"alpha"', "owner")),
            ("/v1/memberships", {"tenant": "alpha"}, None, ok_without('"alpha"', "owner")),
        ],
        ("post", "/v1/memberships"): [
            ("/v1/memberships", None, {"user": "caller", "tenant": "alpha", "role": "member"}, denied),
            ("/v1/memberships", None, {"user": "caller", "tenant": "eu", "role": "viewer"}, denied),
        ],
        ("delete", "/v1/memberships/{membership_id}"): [(f"/v1/memberships/{mid}", None, None, denied)],
        ("get", "/v1/tokens"): [
            ("/v1/tokens", None, None, ok_without("owner")),
            ("/v1/tokens", {"user": "owner"}, None, denied),
        ],
        ("post", "/v1/tokens"): [("/v1/tokens", None, {"user": "owner"}, denied)],
        ("delete", "/v1/tokens/{token_id}"): [(f"/v1/tokens/{tid}", None, None, denied)],
        **tenant_cases,
        ("get", "/v1/projects/{name}/budget"): [("/v1/projects/alpha/budget", None, None, denied)],
        ("put", "/v1/projects/{name}/budget"): [
            ("/v1/projects/alpha/budget", None, {"gpu_hours": 1e6}, denied)
        ],
        ("get", "/v1/facility"): [("/v1/facility", {"nodes": True}, None, ok)],
        ("post", "/v1/jobs"): [
            ("/v1/jobs", None, {"project": "alpha", "gpus": 1, "command": ["x"]}, denied_or_unknown)
        ],
        ("get", "/v1/jobs"): [
            ("/v1/jobs", None, None, no_alpha_jobs),
            ("/v1/jobs", {"user": "owner"}, None, no_alpha_jobs),
            ("/v1/jobs", {"project": "alpha"}, None, denied),
        ],
        ("get", "/v1/jobs/{job_id}"): [(f"/v1/jobs/{job}", None, None, denied)],
        ("post", "/v1/jobs/{job_id}/cancel"): [(f"/v1/jobs/{job}/cancel", None, None, denied)],
        ("post", "/v1/jobs/{job_id}/hold"): [(f"/v1/jobs/{job}/hold", None, None, denied)],
        ("post", "/v1/jobs/{job_id}/release"): [(f"/v1/jobs/{job}/release", None, None, denied)],
        ("post", "/v1/jobs/{job_id}/requeue"): [(f"/v1/jobs/{job}/requeue", None, None, denied)],
        ("get", "/v1/jobs/{job_id}/logs"): [(f"/v1/jobs/{job}/logs", None, None, denied)],
        ("get", "/v1/jobs/{job_id}/logs/stream"): [(f"/v1/jobs/{job}/logs/stream", None, None, denied)],
        ("get", "/v1/usage"): [
            ("/v1/usage", None, None, ok_without('"alpha"')),
            ("/v1/usage", {"project": "alpha"}, None, denied),
            ("/v1/usage", {"partner": "eu"}, None, hidden_or_without_alpha),
        ],
        ("get", "/v1/usage/records"): [
            ("/v1/usage/records", None, None, no_alpha_records),
            ("/v1/usage/records", {"job": job}, None, no_alpha_records),
            ("/v1/usage/records", {"project": "alpha"}, None, denied),
        ],
        ("get", "/v1/usage/guarantees"): [
            ("/v1/usage/guarantees", None, None, ok_without('"eu"')),
            ("/v1/usage/guarantees", {"partner": "eu"}, None, denied),
        ],
        ("get", "/v1/audit"): [("/v1/audit", None, None, denied)],
    }


#: Public endpoints outside the matrix (no tenant data).
PUBLIC = {("get", "/healthz"), ("get", "/metrics")}

#: Roles held elsewhere: never on alpha, its programme eu-ai or its partner eu.
FOREIGN_ROLES: list[tuple[tuple[str, str], ...]] = [
    (),
    (("gamma", "member"),),
    (("gamma", "project-lead"),),
    (("gamma", "viewer"),),
    (("beta", "member"),),
    (("beta", "project-lead"),),
    (("host-research", "project-lead"),),
    (("host", "partner-manager"),),
    (("host", "viewer"),),
]


def _world(api: Api) -> dict[str, Any]:
    api.tree()
    owner = api.user("owner", ("alpha", "member"))
    job = api.job(owner, "alpha", 2, name="secret-run")
    token_id = api.get("/v1/tokens", owner).json()[0]["id"]
    r = api.post("/v1/users", api.admin, {"name": "friend"})
    r = api.post("/v1/memberships", api.admin, {"user": "friend", "tenant": "alpha", "role": "viewer"})
    api.client.put("/v1/projects/alpha/budget", headers=api.h(api.admin), json={"gpu_hours": 50})
    now = api.clock()
    with transaction(api.ctx.sessions) as db:
        alpha = db.query(Tenant).filter(Tenant.name == "alpha").one()
        eu = db.query(Tenant).filter(Tenant.name == "eu").one()
        db.add(UsageRecord(job_id=job["id"], project_id=alpha.id, partner_id=eu.id, gpus=2,
                           started_at=now - timedelta(hours=1), ended_at=now - timedelta(minutes=1),
                           gpu_seconds=7000.0, outcome="completed"))
        db.add(GuaranteeLedger(partner_id=eu.id, hour=now.replace(minute=0) - timedelta(hours=1),
                               owed_gpu_seconds=3600.0, delivered_gpu_seconds=3600.0,
                               lent_gpu_seconds=0.0, used_gpu_seconds=7200.0))
    return {"job_id": job["id"], "membership_id": r.json()["id"], "token_id": token_id,
            "owner_token": owner}


def test_matrix_covers_every_endpoint(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()
    endpoints = {(m, p) for p, ops in spec["paths"].items() for m in ops}
    w = {"job_id": 1, "membership_id": 1, "token_id": 1}
    assert endpoints - PUBLIC == set(cases(w)), "add the new endpoint to the matrix"


@pytest.mark.parametrize("grants", FOREIGN_ROLES, ids=lambda g: "+".join(f"{r}@{t}" for t, r in g) or "none")
def test_foreign_project_is_invisible_and_untouchable(api: Api, grants: tuple[tuple[str, str], ...]) -> None:
    w = _world(api)
    caller = api.user("caller", *grants)
    before_job = api.get(f"/v1/jobs/{w['job_id']}", api.admin).json()
    before_budget = api.get("/v1/projects/alpha/budget", api.admin).json()
    for (method, _), variants in cases(w).items():
        for path, params, body, check in variants:
            r = api.client.request(method.upper(), path, params=params, json=body,
                                   headers=api.h(caller))
            try:
                check(r, w)
            except AssertionError as exc:
                raise AssertionError(f"{method.upper()} {path} {params or ''}: {exc}") from None
    after_job = api.get(f"/v1/jobs/{w['job_id']}", api.admin).json()
    assert after_job["state"] == before_job["state"] == "pending"
    assert after_job["events"] == before_job["events"]
    assert api.get("/v1/projects/alpha/budget", api.admin).json() == before_budget
    assert api.get("/v1/me", w["owner_token"]).status_code == 200  # token not revoked
    assert api.get("/v1/projects/alpha", api.admin).json()["guarantee"] == 8
    names = {m["user"] for m in api.get("/v1/memberships", api.admin, params={"tenant": "alpha"}).json()}
    assert names == {"owner", "friend"}
