"""Tokens (hashed, shown once, expiring, revocable), users, memberships and /me."""

from __future__ import annotations

from sqlalchemy import select

from gigafactory.service.auth.models import ApiToken

from .helpers import Api


def test_healthz_and_missing_token(api: Api) -> None:
    r = api.client.get("/healthz")
    assert r.status_code == 200 and r.json()["database"] == "ok"
    r = api.client.get("/v1/me")
    assert r.status_code == 401
    assert "missing bearer token" in r.json()["detail"]
    r = api.client.get("/v1/me", headers=api.h("gf_nope"))
    assert r.status_code == 401 and r.json()["detail"] == "invalid token"


def test_me_shows_admin(api: Api) -> None:
    r = api.get("/v1/me", api.admin)
    assert r.status_code == 200
    body = r.json()
    assert body["user"]["name"] == "admin" and body["is_admin"] is True
    assert body["memberships"][0]["role"] == "admin"
    assert body["memberships"][0]["tenant"] is None


def test_token_is_stored_hashed_and_shown_once(api: Api) -> None:
    r = api.post("/v1/tokens", api.admin, {"name": "laptop", "expires_in_days": 7})
    assert r.status_code == 201, r.text
    secret = r.json()["token"]
    assert secret.startswith("gf_") and len(secret) > 40
    with api.ctx.sessions() as db:
        hashes = list(db.scalars(select(ApiToken.token_hash)))
    assert secret not in hashes and all(len(h) == 64 for h in hashes)
    listed = api.get("/v1/tokens", api.admin).json()
    assert all("token" not in t for t in listed)
    assert {t["name"] for t in listed} >= {"laptop"}
    assert api.get("/v1/me", secret).status_code == 200


def test_token_expiry(api: Api) -> None:
    secret = api.post("/v1/tokens", api.admin, {"expires_in_days": 1}).json()["token"]
    assert api.get("/v1/me", secret).status_code == 200
    api.clock.advance(2 * 86400)
    r = api.get("/v1/me", secret)
    assert r.status_code == 401 and "expired" in r.json()["detail"]


def test_token_revocation(api: Api) -> None:
    created = api.post("/v1/tokens", api.admin, {"name": "ci"}).json()
    r = api.client.delete(f"/v1/tokens/{created['id']}", headers=api.h(api.admin))
    assert r.status_code == 200 and r.json()["revoked_at"] is not None
    r = api.get("/v1/me", created["token"])
    assert r.status_code == 401 and "revoked" in r.json()["detail"]


def test_users_and_roles(api: Api) -> None:
    api.tree()
    r = api.post("/v1/users", api.admin, {"name": "ada", "email": "ada@example.eu"})
    assert r.status_code == 201
    assert api.post("/v1/users", api.admin, {"name": "ada"}).status_code == 409
    r = api.post("/v1/memberships", api.admin, {"user": "ada", "tenant": "alpha", "role": "member"})
    assert r.status_code == 201, r.text
    # A member cannot be granted on a partner; the error names the field.
    r = api.post("/v1/memberships", api.admin, {"user": "ada", "tenant": "eu", "role": "member"})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "tenant"]
    tok = api.post("/v1/tokens", api.admin, {"user": "ada"}).json()["token"]
    me = api.get("/v1/me", tok).json()
    assert me["is_admin"] is False
    assert [(m["tenant"], m["role"]) for m in me["memberships"]] == [("alpha", "member")]
    # Members cannot create users or grant roles.
    assert api.post("/v1/users", tok, {"name": "eve"}).status_code == 403
    r = api.post("/v1/memberships", tok, {"user": "ada", "tenant": "alpha", "role": "project-lead"})
    assert r.status_code == 403


def test_project_lead_manages_members_of_own_project_only(api: Api) -> None:
    api.tree()
    lead = api.user("lea", ("alpha", "project-lead"))
    api.user("bob")
    ok = api.post("/v1/memberships", lead, {"user": "bob", "tenant": "alpha", "role": "member"})
    assert ok.status_code == 201, ok.text
    r = api.post("/v1/memberships", lead, {"user": "bob", "tenant": "beta", "role": "member"})
    assert r.status_code == 403
    r = api.post("/v1/memberships", lead, {"user": "bob", "tenant": "alpha", "role": "project-lead"})
    assert r.status_code == 403
    r = api.client.delete(f"/v1/memberships/{ok.json()['id']}", headers=api.h(lead))
    assert r.status_code == 204


def test_deactivated_user_is_locked_out(api: Api) -> None:
    tok = api.user("mallory")
    assert api.get("/v1/me", tok).status_code == 200
    r = api.client.patch("/v1/users/mallory", headers=api.h(api.admin), json={"active": False})
    assert r.status_code == 200 and r.json()["active"] is False
    r = api.get("/v1/me", tok)
    assert r.status_code == 401 and "deactivated" in r.json()["detail"]
