"""Group commit of submissions: several submissions in one transaction, each with its
own outcome; a refused one, a replayed key or a database error never loses or mixes up
the others."""

from __future__ import annotations

import asyncio
import contextlib
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


def _gated_batcher(world: Api, gate: threading.Event, sizes: list[int], **settings: Any) -> SubmitBatcher:
    """A writer whose first batch waits for ``gate`` (so everything queued before it
    is set lands in that batch), with ``settings`` changed."""
    ctx = world.ctx
    changed = ctx.settings.model_copy(update=settings)

    def config() -> Any:
        if threading.current_thread().name == "gigafactory-submit":  # the writer, not the request
            gate.wait(10)
        return changed, ctx.facility

    return SubmitBatcher(ctx.sessions, config, on_batch=sizes.append)


def _queued_then_written(batcher: SubmitBatcher, gate: threading.Event, subs: list[Submission]) -> list[Any]:
    """Queue every submission, then open the gate; each answer (or error), in order."""
    async def run() -> list[Any]:
        calls = [asyncio.ensure_future(batcher.submit(s)) for s in subs]
        await asyncio.sleep(0.05)  # every request is queued
        gate.set()
        return await asyncio.gather(*calls, return_exceptions=True)

    try:
        return asyncio.run(run())
    finally:
        batcher.close()


def test_concurrent_submissions_share_one_transaction(world: Api) -> None:
    ada = _who(world, world.user("ada", ("alpha", "member")))
    gate, sizes = threading.Event(), []
    batcher = _gated_batcher(world, gate, sizes)

    now = world.clock()
    answers = _queued_then_written(batcher, gate, [Submission(ada, _body(gpus=1 + i % 4), f"c{i}", now)
                                                   for i in range(20)])
    assert sizes == [20]
    assert [a[0].gpus for a in answers] == [1 + i % 4 for i in range(20)]
    ids = [a[0].id for a in answers]
    assert ids == sorted(ids) and len(set(ids)) == 20
    assert _counts(world) == (20, 20, 20)


def test_a_key_used_twice_in_one_batch_gives_one_job_and_a_replay(world: Api) -> None:
    ada = _who(world, world.user("ada", ("alpha", "member")))
    gate, sizes = threading.Event(), []
    batcher = _gated_batcher(world, gate, sizes)

    now = world.clock()
    first, other, replay, conflict = _queued_then_written(batcher, gate, [
        Submission(ada, _body(gpus=2), "dup", now), Submission(ada, _body(gpus=3), None, now),
        Submission(ada, _body(gpus=2), "dup", now), Submission(ada, _body(gpus=4), "dup", now)])
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


def test_a_submission_after_close_is_refused_at_once_and_reopen_serves_again(world: Api) -> None:
    ada = _who(world, world.user("ada", ("alpha", "member")))
    ctx = world.ctx
    batcher = SubmitBatcher(ctx.sessions, lambda: (ctx.settings, ctx.facility))
    first = asyncio.run(batcher.submit(Submission(ada, _body(), None, world.clock())))
    assert first[1] == "accepted"  # the writer thread is running
    batcher.close()

    async def late() -> Any:
        return await asyncio.wait_for(batcher.submit(Submission(ada, _body(), None, world.clock())), 5)

    with pytest.raises(Unavailable, match="stopping"):
        asyncio.run(late())
    batcher.open()  # an app started again
    try:
        again = asyncio.run(late())
    finally:
        batcher.close()
    assert again[1] == "accepted" and _counts(world) == (2, 2, 2)


def test_a_writer_failure_answers_its_batch_and_the_writer_keeps_serving(world: Api) -> None:
    ada = _who(world, world.user("ada", ("alpha", "member")))
    ctx = world.ctx
    calls = {"writer": 0}

    def config() -> Any:
        if threading.current_thread().name == "gigafactory-submit":
            calls["writer"] += 1
            if calls["writer"] == 1:
                raise RuntimeError("settings file unreadable")
        return ctx.settings, ctx.facility

    batcher = SubmitBatcher(ctx.sessions, config)
    try:
        with pytest.raises(RuntimeError, match="settings file unreadable"):
            asyncio.run(asyncio.wait_for(batcher.submit(Submission(ada, _body(), None, world.clock())), 5))
        out = asyncio.run(asyncio.wait_for(batcher.submit(Submission(ada, _body(), None, world.clock())), 5))
    finally:
        batcher.close()
    assert out[1] == "accepted"


def test_too_many_waiting_submissions_get_503(world: Api) -> None:
    ada = _who(world, world.user("ada", ("alpha", "member")))
    gate, sizes = threading.Event(), []
    batcher = _gated_batcher(world, gate, sizes, submit_queue=3)

    now = world.clock()
    answers = _queued_then_written(batcher, gate, [Submission(ada, _body(), None, now) for _ in range(5)])
    assert [type(a).__name__ for a in answers] == ["tuple"] * 3 + ["Unavailable"] * 2
    assert "already waiting" in str(answers[3]) and _counts(world) == (3, 3, 3)


@pytest.fixture
def pg_world(request: pytest.FixtureRequest, tmp_path: Any) -> Any:
    """The app on PostgreSQL only (for behaviour SQLite cannot show: row locks)."""
    from fastapi.testclient import TestClient

    from gigafactory.service.app import create_app
    from gigafactory.service.settings import Settings

    from .conftest import FakeClock, _truncate

    url: str = request.getfixturevalue("pg_database")
    _truncate(url)
    clock = FakeClock()
    app = create_app(Settings(database_url=url, scheduler_enabled=False, state_dir=tmp_path / "state",
                              facility="dev-32"), clock=clock, run_loop=False)
    with TestClient(app) as client:
        api = Api(client, clock, app.state.ctx)
        api.tree()
        yield api


def _crossed_round(world: Api, engines: list[Any], ada: Any, bob: Any, rnd: int) -> list[str]:
    """One round: two writers get the same keys in opposite orders, and start together."""
    from gigafactory.service.db import session_factory

    ctx = world.ctx
    both = threading.Barrier(2)

    def config() -> Any:
        if threading.current_thread().name == "gigafactory-submit":
            with contextlib.suppress(threading.BrokenBarrierError):
                both.wait(5)  # the two writers start their batches together
        return ctx.settings, ctx.facility

    writers = [SubmitBatcher(session_factory(e), config) for e in engines]
    keys = [f"r{rnd}-{j}" for j in range(8)]
    results: list[list[Any]] = [[], []]

    def process(i: int, order: list[str]) -> None:
        async def go() -> list[Any]:
            now = world.clock()
            subs = [Submission(ada, _body(), k, now) for k in order]
            subs.append(Submission(bob, _body(gpus=3), None, now))
            return await asyncio.gather(*(writers[i].submit(s) for s in subs), return_exceptions=True)
        results[i] = asyncio.run(go())

    threads = [threading.Thread(target=process, args=(0, keys)),
               threading.Thread(target=process, args=(1, keys[::-1]))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for w in writers:
        w.close()
    return [type(x).__name__ if isinstance(x, BaseException) else x[1] for r in results for x in r]


def test_two_processes_writing_the_same_retried_keys_never_deadlock(pg_world: Api) -> None:
    """Two writers (as two server processes) get the same user's retried keys in
    opposite orders, plus another user's unrelated job each: every submission ends
    accepted or replayed, never with a database error."""
    from gigafactory.service.db import make_engine

    world = pg_world
    ada = _who(world, world.user("ada", ("alpha", "member")))
    bob = _who(world, world.user("bob", ("alpha", "member")))
    engines = [make_engine(world.ctx.settings.database_url) for _ in range(2)]
    outcomes: list[str] = []
    try:
        for rnd in range(12):
            outcomes += _crossed_round(world, engines, ada, bob, rnd)
    finally:
        for e in engines:
            e.dispose()
    assert set(outcomes) <= {"accepted", "replayed"}, outcomes
    assert outcomes.count("accepted") == 12 * (8 + 2)  # each key once, and both of bob's jobs


def test_project_lookups_are_reused_but_a_budget_change_is_seen_at_once(world: Api) -> None:
    tok = world.user("ada", ("alpha", "member"))
    assert world.submit(tok, "alpha").status_code == 201  # alpha is now a known project
    assert "alpha" in world.ctx.submitter._projects
    r = world.client.put("/v1/projects/alpha/budget", headers=world.h(world.admin), json={"gpu_hours": 0})
    assert r.status_code == 200
    refused = world.submit(tok, "alpha")
    assert refused.status_code == 402 and "exhausted" in refused.json()["detail"]


def test_under_load_the_writer_lingers_for_more_submissions(world: Api) -> None:
    ada = _who(world, world.user("ada", ("alpha", "member")))
    gate, sizes = threading.Event(), []
    batcher = _gated_batcher(world, gate, sizes, submit_linger=0.3)

    async def run() -> None:
        now = world.clock()
        first = [asyncio.ensure_future(batcher.submit(Submission(ada, _body(), None, now))) for _ in range(2)]
        await asyncio.sleep(0.05)
        gate.set()
        await asyncio.gather(*first)  # a batch of two: the writer is now "busy"
        a = asyncio.ensure_future(batcher.submit(Submission(ada, _body(), None, now)))
        await asyncio.sleep(0.1)  # within the linger: joins the same batch
        b = asyncio.ensure_future(batcher.submit(Submission(ada, _body(), None, now)))
        await asyncio.gather(a, b)

    try:
        asyncio.run(run())
    finally:
        batcher.close()
    assert sizes == [2, 2] and _counts(world) == (4, 4, 4)


def test_an_expired_project_lookup_is_looked_up_and_cached_again(world: Api) -> None:
    import time

    ada = _who(world, world.user("ada", ("alpha", "member")))
    ctx = world.ctx
    settings = ctx.settings.model_copy(update={"auth_cache_ttl": 0.2})
    batcher = SubmitBatcher(ctx.sessions, lambda: (settings, ctx.facility))
    try:
        asyncio.run(batcher.submit(Submission(ada, _body(), None, world.clock())))
        first = batcher._projects["alpha"][0]
        time.sleep(0.3)  # expired
        asyncio.run(batcher.submit(Submission(ada, _body(), None, world.clock())))
        again = batcher._projects["alpha"][0]
    finally:
        batcher.close()
    assert again > first and again > time.monotonic()
