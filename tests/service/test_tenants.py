"""Partners, programmes and projects: the share tree, validated by the core; budgets."""

from __future__ import annotations

from .helpers import Api


def test_create_tree_and_read(api: Api) -> None:
    api.tree()
    r = api.get("/v1/partners", api.admin)
    assert [p["name"] for p in r.json()] == ["eu", "host", "investor"]
    r = api.get("/v1/projects/alpha", api.admin)
    assert r.status_code == 200
    body = r.json()
    assert body["parent"] == "eu-ai" and body["kind"] == "project" and body["guarantee"] == 8
    assert body["budget"]["gpu_hours"] is None and body["budget"]["exhausted"] is False
    r = api.get("/v1/programmes", api.admin, params={"parent": "eu"})
    assert [p["name"] for p in r.json()] == ["eu-ai"]


def test_children_guarantees_cannot_exceed_parent(api: Api) -> None:
    api.tree()
    r = api.post("/v1/projects", api.admin, {"name": "omega", "parent": "eu-ai", "guarantee": 4})
    assert r.status_code == 422
    item = r.json()["detail"][0]
    assert item["loc"] == ["body", "guarantee"]
    assert "children's guarantees (20) exceed its own (16)" in item["msg"]


def test_partner_guarantees_cannot_exceed_facility(api: Api) -> None:
    api.tree()
    r = api.post("/v1/partners", api.admin, {"name": "big", "guarantee": 1})
    assert r.status_code == 422
    assert "more than the facility's 32" in r.json()["detail"][0]["msg"]


def test_parent_kind_is_checked(api: Api) -> None:
    api.tree()
    r = api.post("/v1/projects", api.admin, {"name": "x", "parent": "eu"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "parent"]
    r = api.post("/v1/programmes", api.admin, {"name": "x"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "parent"]
    r = api.post("/v1/partners", api.admin, {"name": "x", "parent": "eu"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "parent"]
    r = api.post("/v1/partners", api.admin, {"name": "alpha"})
    assert r.status_code == 409 and "already exists" in r.json()["detail"]


def test_update_and_delete(api: Api) -> None:
    api.tree()
    r = api.client.patch("/v1/projects/alpha", headers=api.h(api.admin),
                         json={"borrow_limit": 4, "title": "Alpha LLM"})
    assert r.status_code == 200, r.text
    assert r.json()["borrow_limit"] == 4 and r.json()["title"] == "Alpha LLM"
    r = api.client.patch("/v1/projects/alpha", headers=api.h(api.admin), json={"guarantee": 12})
    assert r.status_code == 422
    assert api.get("/v1/projects/alpha", api.admin).json()["guarantee"] == 8
    r = api.client.delete("/v1/programmes/eu-ai", headers=api.h(api.admin))
    assert r.status_code == 409 and "children" in r.json()["detail"]
    assert api.client.delete("/v1/projects/beta", headers=api.h(api.admin)).status_code == 204
    assert api.get("/v1/projects/beta", api.admin).status_code == 404


def test_only_admin_changes_the_tree(api: Api) -> None:
    api.tree()
    pm = api.user("pm", ("eu", "partner-manager"))
    assert api.post("/v1/projects", pm, {"name": "x", "parent": "eu-ai"}).status_code == 403
    r = api.client.patch("/v1/projects/alpha", headers=api.h(pm), json={"guarantee": 1})
    assert r.status_code == 403


def test_visibility_of_tenants(api: Api) -> None:
    api.tree()
    member = api.user("mia", ("gamma", "member"))
    names = {p["name"] for p in api.get("/v1/projects", member).json()}
    assert names == {"gamma"}
    assert [p["name"] for p in api.get("/v1/partners", member).json()] == ["host"]
    assert api.get("/v1/projects/alpha", member).status_code == 404


def test_budget_set_by_partner_manager(api: Api) -> None:
    api.tree()
    pm = api.user("pm", ("eu", "partner-manager"))
    r = api.client.put("/v1/projects/alpha/budget", headers=api.h(pm),
                       json={"gpu_hours": 100, "expires_at": "2026-12-31T00:00:00Z"})
    assert r.status_code == 200, r.text
    assert r.json()["remaining_gpu_hours"] == 100
    r = api.client.put("/v1/projects/gamma/budget", headers=api.h(pm), json={"gpu_hours": 5})
    assert r.status_code == 404
    lead = api.user("lea", ("alpha", "project-lead"))
    r = api.client.put("/v1/projects/alpha/budget", headers=api.h(lead), json={"gpu_hours": 1e6})
    assert r.status_code == 403
    assert api.get("/v1/projects/alpha/budget", lead).json()["gpu_hours"] == 100
