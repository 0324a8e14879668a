"""``serve --demo``: the seed, its tokens, and the job feeder."""

from __future__ import annotations

from sqlalchemy import func, select

from gigafactory.service.demo import DemoFeeder, seed
from gigafactory.service.jobs.models import Job
from gigafactory.service.tenants.models import Tenant

from .helpers import Api


def test_demo_seed_tokens_and_feeder(api: Api) -> None:
    lines = seed(api.ctx, "http://127.0.0.1:8000")
    text = "\n".join(lines)
    assert "gigafactory login --url http://127.0.0.1:8000 --token gf_" in text
    tokens = {ln.split()[0]: ln.split()[-1] for ln in lines if ln.strip().startswith(("researcher", "auditor"))}
    me = api.get("/v1/me", tokens["researcher"]).json()
    assert [(m["tenant"], m["role"]) for m in me["memberships"]] == [("climate-lab", "member")]
    partners = [p["name"] for p in api.get("/v1/partners", api.admin).json()]
    assert partners == ["eu-public", "host-state", "private-investor"]
    # A second start does not seed again, but prints new working tokens.
    again = seed(api.ctx, "http://127.0.0.1:8000")
    with api.ctx.sessions() as db:
        assert db.scalar(select(func.count()).select_from(Tenant)) == 11
    token2 = next(ln.split()[-1] for ln in again if ln.strip().startswith("researcher"))
    assert token2 != tokens["researcher"] and api.get("/v1/me", token2).status_code == 200
    feeder = DemoFeeder(api.ctx, target=3, every=1.0)
    for _ in range(5):
        feeder()
        api.clock.advance(2)
    with api.ctx.sessions() as db:
        jobs = list(db.scalars(select(Job)))
    assert len(jobs) == 3  # topped up to the target, not beyond
    assert all("train_tiny.py" in " ".join(j.command) and j.checkpointable for j in jobs)
