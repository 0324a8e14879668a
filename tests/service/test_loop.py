"""The scheduler loop against the database, with a scripted executor and a fake clock."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from gigafactory.service.jobs.models import Job
from gigafactory.service.scheduler.leader import leader_lock
from gigafactory.service.scheduler.loop import SchedulerLoop
from gigafactory.service.scheduler.runner import LoopRunner
from gigafactory.service.usage.models import UsageRecord

from .fakes import FakeExecutor
from .helpers import Api


class World:
    def __init__(self, api: Api) -> None:
        api.tree()
        self.api = api
        self.fake = FakeExecutor()
        self.loop = SchedulerLoop(api.ctx, self.fake)
        self.ada = api.user("ada", ("alpha", "member"))
        self.dan = api.user("dan", ("delta", "member"))
        self.gil = api.user("gil", ("gamma", "member"))

    def cycle(self, advance: float = 0.0) -> Any:
        if advance:
            self.api.clock.advance(advance)
        return self.loop.run_once()

    def job(self, job_id: int) -> dict[str, Any]:
        r = self.api.get(f"/v1/jobs/{job_id}", self.api.admin)
        assert r.status_code == 200
        data: dict[str, Any] = r.json()
        return data

    def submit(self, token: str, project: str, gpus: int, **kw: Any) -> int:
        kw.setdefault("walltime", 3600)
        return int(self.api.job(token, project, gpus, **kw)["id"])


@pytest.fixture
def w(api: Api) -> World:
    return World(api)


def test_start_place_and_explain(w: World) -> None:
    a = w.submit(w.ada, "alpha", 8, env={"SEED": "7"})
    g = w.submit(w.gil, "gamma", 8)
    d = w.submit(w.dan, "delta", 8)
    big = w.submit(w.ada, "alpha", 16)
    bigger = w.submit(w.gil, "gamma", 16)  # two pending jobs: reasons written in one batch
    w.cycle()
    for jid in (a, g, d):
        job = w.job(jid)
        assert job["state"] == "running", job
        assert [e["to_state"] for e in job["events"]] == ["pending", "starting", "running"]
    devices = {(p["node"], dev) for jid in (a, g, d) for p in w.job(jid)["placement"]
               for dev in p["devices"]}
    assert len(devices) == 24  # no device handed out twice
    req = next(r for r in w.fake.launched if r.job_id == str(a))
    assert req.env == {"SEED": "7"} and req.restart_count == 0
    assert sum(len(v) for v in req.devices.values()) == 8
    assert str(req.checkpoint_dir).endswith(f"checkpoints/{a}")
    assert str(req.log_path).endswith(f"logs/{a}.log")
    pending = w.job(big)
    assert pending["state"] == "pending"
    assert pending["pending_reason"] and pending["pending_reason"] != "waiting for the next scheduling cycle"
    assert pending["estimated_start"] is not None
    assert w.job(bigger)["pending_reason"] != "waiting for the next scheduling cycle"


def test_completion_is_charged(w: World) -> None:
    w.api.client.put("/v1/projects/alpha/budget", headers=w.api.h(w.api.admin), json={"gpu_hours": 100})
    a = w.submit(w.ada, "alpha", 8)
    w.cycle()
    w.api.clock.advance(1800)
    w.fake.finish(str(a), "completed", 0, "exit code 0")
    w.cycle()
    job = w.job(a)
    assert job["state"] == "completed" and job["exit_code"] == 0
    assert job["gpu_hours"] == pytest.approx(4.0)
    budget = w.api.get("/v1/projects/alpha/budget", w.ada).json()
    assert budget["used_gpu_hours"] == pytest.approx(4.0) and budget["remaining_gpu_hours"] == pytest.approx(96.0)
    with w.api.ctx.sessions() as db:
        rec = db.scalars(select(UsageRecord)).one()
    assert rec.gpu_seconds == pytest.approx(8 * 1800) and rec.outcome == "completed"
    records = w.api.get("/v1/usage/records", w.ada).json()["items"]
    assert [r["job_id"] for r in records] == [a]


def test_cancel_running_stops_it(w: World) -> None:
    a = w.submit(w.ada, "alpha", 4)
    w.cycle()
    r = w.api.post(f"/v1/jobs/{a}/cancel", w.ada)
    assert r.json()["state"] == "cancelled"
    w.cycle()
    assert w.fake.cancels == [(str(a), False, None)]
    w.cycle()
    assert len(w.fake.cancels) == 1  # asked once
    w.fake.finish(str(a), "cancelled", -15)
    w.cycle(60)
    job = w.job(a)
    assert job["state"] == "cancelled"
    with w.api.ctx.sessions() as db:
        assert db.get(Job, a).active is False  # type: ignore[union-attr]


def test_reclaim_preempts_borrower_and_victim_resumes(w: World) -> None:
    borrowers = [w.submit(w.dan, "delta", 8, checkpointable=True, checkpoint_interval=600)
                 for _ in range(4)]
    w.cycle()
    assert all(w.job(b)["state"] == "running" for b in borrowers)
    owed = w.submit(w.ada, "alpha", 8)
    w.cycle(60)
    preempting = [b for b in borrowers if w.job(b)["state"] == "preempting"]
    assert len(preempting) == 1
    victim = preempting[0]
    assert f"preempted for job {owed}" in w.job(victim)["state_reason"]
    w.cycle()
    assert (str(victim), True, None) in w.fake.cancels
    assert "being reclaimed from 1 preempted job" in w.job(owed)["pending_reason"]
    ckpt = w.job(victim)["checkpoint_dir"]
    w.fake.finish(str(victim), "preempted", 143, "stopped on SIGTERM: exit code 143")
    w.cycle(5)
    job = w.job(victim)
    assert job["state"] == "requeued" and job["restart_count"] == 1
    assert w.job(owed)["state"] == "running"
    # When the owner's job ends, the victim resumes from the same directory, restart 1.
    w.fake.finish(str(owed), "completed", 0)
    w.cycle(600)
    assert w.job(victim)["state"] == "running"
    relaunch = [r for r in w.fake.launched if r.job_id == str(victim)][-1]
    assert relaunch.restart_count == 1 and str(relaunch.checkpoint_dir) == ckpt
    states = [e["to_state"] for e in w.job(victim)["events"]]
    assert states == ["pending", "starting", "running", "preempting", "requeued", "starting", "running"]


def test_requeue_running_job(w: World) -> None:
    a = w.submit(w.ada, "alpha", 2, checkpointable=True)
    w.cycle()
    r = w.api.post(f"/v1/jobs/{a}/requeue", w.ada, {"reason": "new data"})
    assert r.json()["state"] == "preempting"
    w.cycle()
    assert (str(a), True, None) in w.fake.cancels
    w.fake.finish(str(a), "preempted", 143)
    w.cycle(1)
    w.cycle(1)
    job = w.job(a)
    assert job["state"] == "running" and job["restart_count"] == 1


def test_failed_job_can_be_retried(w: World) -> None:
    a = w.submit(w.ada, "alpha", 1)
    w.cycle()
    w.fake.finish(str(a), "failed", 3, "exit code 3")
    w.cycle(10)
    assert w.job(a)["state"] == "failed" and w.job(a)["exit_code"] == 3
    assert w.api.post(f"/v1/jobs/{a}/requeue", w.ada).json()["state"] == "requeued"
    w.cycle(1)
    assert w.job(a)["state"] == "running" and w.job(a)["restart_count"] == 1


def test_reconcile_after_crash(w: World) -> None:
    keep = w.submit(w.ada, "alpha", 4)
    lost_ckpt = w.submit(w.ada, "alpha", 2, checkpointable=True)
    lost_plain = w.submit(w.gil, "gamma", 2)
    w.cycle()
    # The control plane "crashes"; its successor's executor only knows one job, plus an
    # orphan the database never heard of.
    fresh = FakeExecutor()
    fresh.state = {str(keep): "running", "999": "running"}
    w.loop = SchedulerLoop(w.api.ctx, fresh)
    waiting = w.submit(w.ada, "alpha", 2)
    w.cycle(30)
    assert w.job(keep)["state"] == "running"
    assert w.job(lost_ckpt)["state"] in ("requeued", "starting", "running")
    assert any("lost" in e["reason"] for e in w.job(lost_ckpt)["events"])
    assert w.job(lost_plain)["state"] == "failed"
    assert "not checkpointable" in w.job(lost_plain)["state_reason"]
    assert ("999", False, 0) in fresh.cancels
    # Scheduling resumed after reconciliation: the new job and the resumable one start.
    assert w.job(waiting)["state"] == "running"
    assert {r.job_id for r in fresh.launched} >= {str(waiting), str(lost_ckpt)}


def test_budget_exhaustion_holds_queued_jobs(w: World, api: Api) -> None:
    put = api.client.put
    put("/v1/projects/alpha/budget", headers=api.h(api.admin), json={"gpu_hours": 1})
    running = w.submit(w.ada, "alpha", 8)
    w.cycle()
    later = w.submit(w.ada, "alpha", 16)
    w.cycle(900)  # 8 GPUs × 15 min = 2 GPU-hours > 1
    job = w.job(later)
    assert job["state"] == "held" and job["hold_kind"] == "budget"
    assert "budget of 1 GPU-hours is exhausted" in job["state_reason"]
    assert w.job(running)["state"] == "running"  # running work is not killed
    put("/v1/projects/alpha/budget", headers=api.h(api.admin), json={"gpu_hours": 1000})
    w.cycle(1)
    assert w.job(later)["state"] in ("pending", "starting", "running")


def test_walltime_is_enforced(w: World) -> None:
    a = w.submit(w.ada, "alpha", 1, walltime=600)
    w.cycle()
    w.cycle(601)
    job = w.job(a)
    assert job["state"] == "failed" and "walltime limit of 600 s reached" in job["state_reason"]
    w.cycle()
    assert (str(a), False, None) in w.fake.cancels


def test_guarantee_ledger(w: World) -> None:
    for _ in range(3):
        w.submit(w.dan, "delta", 8)  # investor: 8 owed, 24 borrowed from idle partners
    w.cycle()
    w.cycle(30)
    w.cycle(30)
    ledger = {p["partner"]: p for p in w.api.get("/v1/usage/guarantees", w.api.admin).json()["partners"]}
    inv, eu = ledger["investor"], ledger["eu"]
    assert inv["owed_gpu_hours"] == pytest.approx(8 * 60 / 3600)
    assert inv["delivered_gpu_hours"] == pytest.approx(8 * 60 / 3600)
    assert inv["used_gpu_hours"] == pytest.approx(24 * 60 / 3600)
    assert eu["owed_gpu_hours"] == 0 and eu["unmet_gpu_hours"] == 0
    total_lent = sum(p["lent_gpu_hours"] for p in ledger.values())
    assert total_lent == pytest.approx(16 * 60 / 3600)
    assert eu["lent_gpu_hours"] == pytest.approx(16 * 60 / 3600 * 16 / 24)


def test_metrics(w: World) -> None:
    w.submit(w.ada, "alpha", 8)
    w.submit(w.ada, "alpha", 32)
    w.cycle()
    text = w.api.client.get("/metrics").text
    assert "gigafactory_queue_length 1.0" in text
    assert "gigafactory_running_gpus 8.0" in text
    assert 'gigafactory_submissions_total{outcome="accepted"} 2.0' in text
    assert "gigafactory_cycle_seconds_count 1.0" in text


def test_one_leader_at_a_time(api: Api) -> None:
    first, second = leader_lock(api.ctx.engine), leader_lock(api.ctx.engine)
    try:
        assert first.try_acquire() is True
        assert second.try_acquire() is False
        assert first.still_held()
        first.release()
        assert second.try_acquire() is True
    finally:
        first.release()
        second.release()


def test_runner_steps_only_as_leader(api: Api) -> None:
    api.tree()
    fake = FakeExecutor()
    api.ctx.executor = fake
    a, b = LoopRunner(api.ctx), LoopRunner(api.ctx)
    try:
        a.step()
        b.step()
        assert a.health()["leader"] is True and b.health() == {"leader": False}
        assert a.loop is not None and a.loop.cycles == 1
    finally:
        a._drop()
        a.lock.release()
        b.lock.release()
