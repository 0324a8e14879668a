"""Jobs API: submit, idempotency, keyset pagination, actions and the state machine."""

from __future__ import annotations

import pytest

from gigafactory.service.jobs.states import TRANSITIONS, IllegalTransition, check

from .helpers import Api


@pytest.fixture
def world(api: Api) -> Api:
    api.tree()
    return api


def test_submit_and_show(world: Api) -> None:
    tok = world.user("ada", ("alpha", "member"))
    r = world.submit(tok, "alpha", 8, name="pretrain", walltime=7200, priority="urgent",
                     checkpointable=True, env={"SEED": "1"})
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["state"] == "pending" and job["user"] == "ada" and job["project"] == "alpha"
    assert job["pending_reason"] == "waiting for the next scheduling cycle"
    r = world.get(f"/v1/jobs/{job['id']}", tok)
    assert r.status_code == 200
    events = r.json()["events"]
    assert [(e["from_state"], e["to_state"]) for e in events] == [(None, "pending")]
    assert events[0]["reason"] == "submitted by ada" and events[0]["actor"] == "ada"


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"gpus": 0}, ["body", "gpus"]),
        ({"gpus": 64}, ["body", "gpus"]),
        ({"accelerator": "TPU"}, ["body", "accelerator"]),
        ({"walltime": -1}, ["body", "walltime"]),
        ({"priority": "vip"}, ["body", "priority"]),
        ({"command": []}, ["body", "command"]),
        ({"env": {"CUDA_VISIBLE_DEVICES": "0"}}, ["body", "env", "CUDA_VISIBLE_DEVICES"]),
        ({"project": "nope"}, ["body", "project"]),
        ({"name": "a\x00b"}, ["body", "name"]),
        ({"surprise": 1}, ["body", "surprise"]),
    ],
)
def test_submit_validation_names_the_field(world: Api, body: dict, loc: list) -> None:
    tok = world.user("ada", ("alpha", "member"))
    payload = {"project": "alpha", "gpus": 1, "command": ["true"], **body}
    r = world.post("/v1/jobs", tok, payload)
    assert r.status_code == 422, r.text
    assert loc in [d["loc"] for d in r.json()["detail"]]


def test_idempotency_key(world: Api) -> None:
    tok = world.user("ada", ("alpha", "member"))
    key = {"Idempotency-Key": "run-42"}
    first = world.submit(tok, "alpha", 2, headers=key)
    again = world.submit(tok, "alpha", 2, headers=key)
    assert first.status_code == 201 and again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert first.json()["id"] == again.json()["id"]
    jobs = world.get("/v1/jobs", tok).json()["items"]
    assert len(jobs) == 1
    other = world.submit(tok, "alpha", 4, headers=key)
    assert other.status_code == 409 and "different request" in other.json()["detail"]
    # Keys are per user: another user's identical key makes its own job.
    tok2 = world.user("bob", ("alpha", "member"))
    assert world.submit(tok2, "alpha", 2, headers=key).status_code == 201


def test_keyset_pagination_and_filters(world: Api) -> None:
    tok = world.user("ada", ("alpha", "member"), ("beta", "member"))
    ids = [world.job(tok, "alpha" if i % 2 else "beta")["id"] for i in range(7)]
    seen: list[int] = []
    cursor = None
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = world.get("/v1/jobs", tok, params=params).json()
        seen += [j["id"] for j in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(ids, reverse=True)
    alpha = world.get("/v1/jobs", tok, params={"project": "alpha"}).json()["items"]
    assert {j["project"] for j in alpha} == {"alpha"} and len(alpha) == 3
    held_id = ids[0]
    world.post(f"/v1/jobs/{held_id}/hold", tok)
    held = world.get("/v1/jobs", tok, params={"state": "held"}).json()["items"]
    assert [j["id"] for j in held] == [held_id]
    both = world.get("/v1/jobs", tok, params=[("state", "held"), ("state", "pending")]).json()
    assert len(both["items"]) == 7


def test_hold_release_cancel(world: Api) -> None:
    tok = world.user("ada", ("alpha", "member"))
    jid = world.job(tok, "alpha")["id"]
    r = world.post(f"/v1/jobs/{jid}/hold", tok, {"reason": "waiting for data"})
    assert r.status_code == 200 and r.json()["state"] == "held"
    assert r.json()["hold_kind"] == "user"
    assert world.post(f"/v1/jobs/{jid}/hold", tok).status_code == 409
    assert world.post(f"/v1/jobs/{jid}/release", tok).json()["state"] == "pending"
    r = world.post(f"/v1/jobs/{jid}/cancel", tok)
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    events = r.json()["events"]
    assert [e["to_state"] for e in events] == ["pending", "held", "pending", "cancelled"]
    assert events[1]["reason"] == "held by ada: waiting for data"
    r = world.post(f"/v1/jobs/{jid}/release", tok)
    assert r.status_code == 409
    r = world.post(f"/v1/jobs/{jid}/requeue", tok)
    assert r.status_code == 409 and "only running, starting or failed" in r.json()["detail"]
    r = world.post(f"/v1/jobs/{jid}/cancel", tok)
    assert r.status_code == 409
    assert "cannot go from cancelled to cancelled" in r.json()["detail"]


def test_members_act_on_own_jobs_leads_on_all(world: Api) -> None:
    ada = world.user("ada", ("alpha", "member"))
    bob = world.user("bob", ("alpha", "member"))
    lead = world.user("lea", ("alpha", "project-lead"))
    jid = world.job(ada, "alpha")["id"]
    assert world.get(f"/v1/jobs/{jid}", bob).status_code == 200  # same project: visible
    r = world.post(f"/v1/jobs/{jid}/cancel", bob)
    assert r.status_code == 403 and "bob may not cancel job" in r.json()["detail"]
    assert world.post(f"/v1/jobs/{jid}/hold", lead).status_code == 200


def test_viewer_cannot_submit(world: Api) -> None:
    viewer = world.user("vic", ("alpha", "viewer"))
    r = world.submit(viewer, "alpha")
    assert r.status_code == 403 and "may not submit" in r.json()["detail"]


def test_budget_refusal_and_hold(world: Api) -> None:
    tok = world.user("ada", ("alpha", "member"))
    r = world.client.put("/v1/projects/alpha/budget", headers=world.h(world.admin),
                         json={"gpu_hours": 0})
    assert r.status_code == 200 and r.json()["exhausted"] is True
    r = world.submit(tok, "alpha")
    assert r.status_code == 402
    assert "budget of 0 GPU-hours is exhausted" in r.json()["detail"]
    r = world.client.put("/v1/projects/alpha/budget", headers=world.h(world.admin),
                         json={"gpu_hours": 10, "expires_at": "2026-03-01T11:00:00Z"})
    r = world.submit(tok, "alpha")
    assert r.status_code == 402 and "expired" in r.json()["detail"]


def test_audit_log_records_mutations(world: Api) -> None:
    tok = world.user("ada", ("alpha", "member"))
    jid = world.job(tok, "alpha")["id"]
    world.post(f"/v1/jobs/{jid}/cancel", tok)
    r = world.get("/v1/audit", world.admin, params={"actor": "ada"})
    assert r.status_code == 200
    actions = [(e["action"], e["target"]) for e in r.json()["items"]]
    assert actions == [("job.cancel", f"job:{jid}"), ("job.submit", f"job:{jid}")]
    assert all(e["at"] for e in r.json()["items"])
    assert world.get("/v1/audit", tok).status_code == 403
    admin_actions = {e["action"] for e in world.get("/v1/audit", world.admin,
                                                      params={"actor": "admin"}).json()["items"]}
    assert {"partner.create", "programme.create", "project.create"} <= admin_actions


def test_state_machine_rejects_illegal_transitions() -> None:
    assert check(1, "pending", "starting")
    with pytest.raises(IllegalTransition, match="cannot go from completed to running"):
        check(1, "completed", "running")
    with pytest.raises(IllegalTransition, match="from held it can go to: cancelled, pending"):
        check(7, "held", "running")
    # Final states have no way out except failed → requeued (retry).
    assert TRANSITIONS["completed"] == frozenset() and TRANSITIONS["cancelled"] == frozenset()


def test_budget_exhausted_jobs_can_be_accepted_held(world: Api) -> None:
    world.ctx.settings = world.ctx.settings.model_copy(update={"budget_exhausted": "hold"})
    tok = world.user("ada", ("alpha", "member"))
    world.client.put("/v1/projects/alpha/budget", headers=world.h(world.admin), json={"gpu_hours": 0})
    r = world.submit(tok, "alpha")
    assert r.status_code == 201
    job = r.json()
    assert job["state"] == "held" and job["hold_kind"] == "budget"
    assert "budget of 0 GPU-hours is exhausted" in job["state_reason"]
    r = world.post(f"/v1/jobs/{job['id']}/release", tok)
    assert r.status_code == 402 and "the job stays held" in r.json()["detail"]


def test_openapi_docs_are_served(world: Api) -> None:
    assert world.client.get("/docs").status_code == 200
    spec = world.client.get("/openapi.json").json()
    assert "/v1/jobs" in spec["paths"] and "HTTPBearer" in spec["components"]["securitySchemes"]
