"""Group commit of submissions: several submissions in one transaction, each with its
own outcome; a refused one, a replayed key or a database error never loses or mixes up
the others."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from gigafactory.service.audit.models import AuditEntry
from gigafactory.service.auth.service import authenticate
from gigafactory.service.errors import BudgetExhausted, Forbidden, Invalid, Unavailable
from gigafactory.service.jobs.batcher import SubmitBatcher
from gigafactory.service.jobs.models import Job, JobEvent
from gigafactory.service.jobs.schemas import JobOut, JobSubmit
from gigafactory.service.jobs.service import Submission, submit_many

from .helpers import Api


@pytest.fixture
def world(api: Api) -> Api:
    api.tree()
    return api


def _body(project: str = "alpha", gpus: int = 1, **kw: Any) -> JobSubmit:
    return JobSubmit.model_validate({"project": project, "gpus": gpus, "command": ["true"], **kw})


def _who(world: Api, token: str) -> Any:
    with world.ctx.sessions() as db:
        return authenticate(db, token, world.clock())


def _counts(world: Api) -> tuple[int, int, int]:
    with world.ctx.sessions() as db:
        return (db.scalar(select(func.count()).select_from(Job)) or 0,
                db.scalar(select(func.count()).select_from(JobEvent)) or 0,
                db.scalar(select(func.count()).select_from(AuditEntry)
                          .where(AuditEntry.action == "job.submit")) or 0)


def test_one_batch_gives_each_submission_its_own_outcome(world: Api) -> None:
    ada = _who(world, world.user("ada", ("alpha", "member"), ("beta", "member")))
    viewer = _who(world, world.user("vic", ("alpha", "viewer")))
    world.client.put("/v1/projects/beta/budget", headers=world.h(world.admin), json={"gpu_hours": 0})
    now = world.clock()
    items = [
        Submission(ada, _body("alpha", 2), "k1", now),
        Submission(ada, _body("nope"), None, now),              # unknown project
        Submission(viewer, _body("alpha"), None, now),          # may read, not submit
        Submission(ada, _body("beta"), None, now),              # budget spent: refused
        Submission(ada, _body("alpha", 1000), None, now),       # larger than dev-32
        Submission(ada, _body("alpha", 4, name="last"), None, now),
    ]
    with world.ctx.sessions() as db:
        out = submit_many(db, items, world.ctx.settings, world.ctx.facility)
    assert len(out) == len(items)
    first, unknown, forbidden, spent, huge, last = out
    assert isinstance(first, tuple) and isinstance(last, tuple)
    assert first[1:] == ("accepted", True) and last[1:] == ("accepted", True)
    assert first[0].gpus == 2 and last[0].name == "last" and first[0].id < last[0].id
    assert isinstance(unknown, Invalid) and unknown.loc == ["body", "project"]
    assert isinstance(forbidden, Forbidden) and "vic may not submit" in str(forbidden)
    assert isinstance(spent, BudgetExhausted)
    assert isinstance(huge, Invalid) and huge.loc == ["body", "gpus"]
    # Exactly the two accepted jobs were stored, each with its event and audit entry.
    assert _counts(world) == (2, 2, 2)


def test_the_submit_answer_is_the_stored_job(world: Api) -> None:
    tok = world.user("ada", ("alpha", "member"))
    r = world.submit(tok, "alpha", 8, name="pretrain", walltime=7200, priority="urgent",
                     checkpointable=True, checkpoint_interval=600, env={"SEED": "1"},
                     headers={"Idempotency-Key": "same-as-shown"})
    assert r.status_code == 201
    shown = world.get(f"/v1/jobs/{r.json()['id']}", tok).json()
    shown.pop("events")
    assert r.json() == shown
    assert JobOut.model_validate(r.json()).state == "pending"


def _gated_batcher(world: Api, gate: threading.Event, sizes: list[int]) -> SubmitBatcher:
    """A writer whose first batch waits for ``gate`` (so everything queued before it
    is set lands in that batch)."""
    ctx = world.ctx

    def config() -> Any:
        gate.wait(10)
        return ctx.settings, ctx.facility

    return SubmitBatcher(ctx.sessions, config, on_batch=sizes.append)


def test_concurrent_submissions_share_one_transaction(world: Api) -> None:
    ada = _who(world, world.user("ada", ("alpha", "member")))
    gate, sizes = threading.Event(), []
    batcher = _gated_batcher(world, gate, sizes)

    async def run() -> list[Any]:
        now = world.clock()
        calls = [asyncio.ensure_future(batcher.submit(Submission(ada, _body(gpus=1 + i % 4), f"c{i}", now)))
                 for i in range(20)]
        await asyncio.sleep(0.05)  # every request is queued
        gate.set()
        return await asyncio.gather(*calls)

    try:
        answers = asyncio.run(run())
    finally:
        batcher.close()
    assert sizes == [20]
    assert [a[0].gpus for a in answers] == [1 + i % 4 for i in range(20)]
    ids = [a[0].id for a in answers]
    assert ids == sorted(ids) and len(set(ids)) == 20
    assert _counts(world) == (20, 20, 20)


def test_a_key_used_twice_in_one_batch_gives_one_job_and_a_replay(world: Api) -> None:
    ada = _who(world, world.user("ada", ("alpha", "member")))
    gate, sizes = threading.Event(), []
    batcher = _gated_batcher(world, gate, sizes)

    async def run() -> list[Any]:
        now = world.clock()
        subs = [Submission(ada, _body(gpus=2), "dup", now), Submission(ada, _body(gpus=3), None, now),
                Submission(ada, _body(gpus=2), "dup", now), Submission(ada, _body(gpus=4), "dup", now)]
        calls = [asyncio.ensure_future(batcher.submit(s)) for s in subs]
        await asyncio.sleep(0.05)
        gate.set()
        return await asyncio.gather(*calls, return_exceptions=True)

    try:
        first, other, replay, conflict = asyncio.run(run())
    finally:
        batcher.close()
    assert sizes == [4]  # one batch, rolled back on the key and retried one by one
    assert first[1:] == ("accepted", True) and other[1:] == ("accepted", True)
    assert replay[1:] == ("replayed", False) and replay[0].id == first[0].id
    assert "already used for a different request" in str(conflict)
    assert _counts(world) == (2, 2, 2)


def test_a_database_error_fails_the_batch_and_stores_nothing(world: Api) -> None:
    ada = _who(world, world.user("ada", ("alpha", "member")))
    ctx = world.ctx

    def broken() -> Any:
        raise OperationalError("SELECT 1", {}, Exception("connection refused"))

    batcher = SubmitBatcher(broken, lambda: (ctx.settings, ctx.facility))

    async def run() -> list[Any]:
        now = world.clock()
        return await asyncio.gather(*(batcher.submit(Submission(ada, _body(), None, now))
                                      for _ in range(3)), return_exceptions=True)

    try:
        answers = asyncio.run(run())
    finally:
        batcher.close()
    assert all(isinstance(a, OperationalError) for a in answers)
    assert _counts(world) == (0, 0, 0)


def test_a_closed_writer_refuses_new_submissions(world: Api) -> None:
    ada = _who(world, world.user("ada", ("alpha", "member")))
    ctx = world.ctx
    batcher = SubmitBatcher(ctx.sessions, lambda: (ctx.settings, ctx.facility))
    batcher.close()
    with pytest.raises(Unavailable, match="the service is stopping"):
        asyncio.run(batcher.submit(Submission(ada, _body(), None, world.clock())))


def test_submissions_metric_counts_refusals_and_batches(world: Api) -> None:
    tok = world.user("ada", ("alpha", "member"))
    assert world.submit(tok, "alpha").status_code == 201
    assert world.submit(tok, "nope").status_code == 422
    text = world.client.get("/metrics").text
    assert 'gigafactory_submissions_total{outcome="accepted"} 1.0' in text
    assert 'gigafactory_submissions_total{outcome="refused"} 1.0' in text
    assert "gigafactory_submit_batch_size_count 2.0" in text


def test_new_job_rows_are_written_with_every_submitted_value(world: Api) -> None:
    from gigafactory.service.jobs import service, store

    ada = _who(world, world.user("ada", ("alpha", "member")))
    values = service._job_values(Submission(ada, _body(), "k", world.clock()), 1, "pending", None,
                                 "r", "d", world.ctx.settings)
    assert tuple(values) == store.JOB_KEYS


@pytest.mark.parametrize("n", [1, 3])
def test_stored_rows_match_the_answer(world: Api, n: int) -> None:
    """One statement per job on PostgreSQL, three elsewhere: the same rows either way."""
    ada = _who(world, world.user("ada", ("alpha", "member")))
    now = world.clock()
    items = [Submission(ada, _body(gpus=i + 1, env={"SEED": str(i)}, name=f"j{i}"), f"s{i}", now)
             for i in range(n)]
    with world.ctx.sessions() as db:
        out = submit_many(db, items, world.ctx.settings, world.ctx.facility)
    with world.ctx.sessions() as db:
        for i, res in enumerate(out):
            assert isinstance(res, tuple)
            job = db.get(Job, res[0].id)
            assert job is not None and job.name == f"j{i}" and job.env == {"SEED": str(i)}
            assert job.submitted_at == now and job.idempotency_key == f"s{i}"
            ev = db.scalars(select(JobEvent).where(JobEvent.job_id == job.id)).all()
            assert [(e.to_state, e.actor, e.at) for e in ev] == [("pending", "ada", now)]
            audit = db.scalars(select(AuditEntry).where(AuditEntry.target == f"job:{job.id}")).one()
            assert (audit.actor, audit.action, audit.at) == ("ada", "job.submit", now)
            assert audit.detail == {"project": "alpha", "gpus": i + 1, "state": "pending"}


def test_a_failing_metrics_hook_never_fails_a_committed_submission(world: Api) -> None:
    ada = _who(world, world.user("ada", ("alpha", "member")))
    ctx = world.ctx

    def hook(n: int) -> None:
        raise ValueError("hook bug")

    batcher = SubmitBatcher(ctx.sessions, lambda: (ctx.settings, ctx.facility), on_batch=hook)
    try:
        first = asyncio.run(batcher.submit(Submission(ada, _body(), None, world.clock())))
        second = asyncio.run(batcher.submit(Submission(ada, _body(gpus=2), None, world.clock())))
    finally:
        batcher.close()
    assert first[1:] == second[1:] == ("accepted", True) and second[0].gpus == 2
    assert _counts(world) == (2, 2, 2)
