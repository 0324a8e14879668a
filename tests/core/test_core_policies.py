"""Each policy's documented behaviour, table-driven with small builders."""

from __future__ import annotations

import pytest
from builders import a_facility, a_job, a_tree

from gigafactory.core.decisions import Decisions
from gigafactory.core.facility import preset
from gigafactory.core.jobs import JobSpec, TopologyWish
from gigafactory.core.policies import POLICIES, get_policy
from gigafactory.core.scheduler import Scheduler, SchedulerConfig

TREE = a_tree().partner("eu", 16).partner("priv", 16).project("a", "eu", 16).project("b", "priv", 16)


def sched(policy: str = "gigafactory", nodes: int = 4, tree=TREE, **cfg: float) -> Scheduler:  # type: ignore[no-untyped-def]
    return Scheduler(a_facility().nodes(nodes).per_block(2).build(), tree.build(), policy, SchedulerConfig(**cfg))


def started(d: Decisions) -> list[str]:
    return [s.job_id for s in d.starts]


def status(d: Decisions, job: str) -> tuple[float | None, str]:
    for p in d.pending:
        if p.job_id == job:
            return p.estimated_start, p.reason
    raise AssertionError(f"no status for {job}")


def submit(s: Scheduler, *jobs: JobSpec) -> None:
    for j in jobs:
        s.submit(j)


def test_registry_lists_every_policy_and_rejects_unknown_names() -> None:
    assert list(POLICIES) == ["fifo", "easy-backfill", "las", "srtf", "gigafactory", "kube-default"]
    assert all(p.doc for p in POLICIES.values())
    with pytest.raises(ValueError, match="unknown policy 'x'; expected one of fifo, easy-backfill"):
        get_policy("x")


def test_fifo_is_strict() -> None:
    s = sched("fifo")
    submit(s, a_job("big", "a").gpus(24).runs("1h").at(0).build(),
           a_job("huge", "a").gpus(16).runs("1h").at(1).build(),
           a_job("tiny", "b").gpus(1).runs("1m").at(2).build())
    d = s.cycle(10)
    assert started(d) == ["big"]
    assert status(d, "tiny")[1] == "behind job huge (strict first-come first-served)"


@pytest.mark.parametrize(("runtime", "backfills"), [("30m", True), ("3h", False)])
def test_easy_backfill_only_when_the_head_is_not_delayed(runtime: str, backfills: bool) -> None:
    s = sched("easy-backfill")
    submit(s, a_job("r1", "a").gpus(24).runs("1h").build())
    s.cycle(0)
    submit(s, a_job("head", "a").gpus(32).runs("1h").at(1).build(),
           a_job("small", "b").gpus(8).runs(runtime).at(2).build())
    d = s.cycle(10)
    assert [r.job_id for r in d.reservations] == ["head"]
    assert d.reservations[0].start_time == 3600.0
    assert ("small" in started(d)) is backfills
    if not backfills:
        assert status(d, "small")[1] == "behind the reservation of job head"


def test_las_prefers_least_attained_service() -> None:
    s = sched("las")
    s.submit(a_job("old", "a").gpus(32).runs("1h").at(0).build(), attained_service=100_000)
    s.submit(a_job("new", "b").gpus(32).runs("1h").at(5).build())
    assert started(s.cycle(10)) == ["new"]


def test_srtf_uses_the_true_remaining_runtime() -> None:
    s = sched("srtf")
    submit(s, a_job("long", "a").gpus(32).runs("5h").at(0).build(),
           a_job("short", "b").gpus(32).runs("5h").truly_runs("10m").at(5).build())
    assert started(s.cycle(10)) == ["short"]


def test_gigafactory_orders_by_class_then_fair_share_then_age() -> None:
    s = sched("gigafactory", tree=a_tree().project("heavy").project("light"))
    submit(s, a_job("warm", "heavy").gpus(32).runs("1h").build())
    s.cycle(0)
    s.job_ended("warm", 3600)  # heavy has used the whole facility for an hour
    submit(s, a_job("h1", "heavy").gpus(32).runs("1h").at(3600).build(),
           a_job("l1", "light").gpus(32).runs("1h").at(3601).build(),
           a_job("u1", "heavy").gpus(32).runs("1h").preemptible().at(3500).build())
    d = s.cycle(3700)
    assert started(d) == ["l1"]  # light has used nothing: higher fair-share factor
    order = [p.job_id for p in d.pending]
    assert order.index("h1") < order.index("u1")  # normal before preemptible, although younger
    s2 = sched("gigafactory", tree=a_tree().project("x"))
    submit(s2, a_job("n", "x").gpus(32).at(0).build(), a_job("u", "x").gpus(32).urgent().at(50).build())
    assert started(s2.cycle(60)) == ["u"]


def test_reclaim_preempts_borrowers_after_the_deadline_would_pass() -> None:
    s = sched(reclaim_deadline=600)
    submit(s, *[a_job(f"b{i}", "b").gpus(8).runs("2h").build() for i in range(4)])
    assert len(started(s.cycle(0))) == 4
    submit(s, a_job("a1", "a").gpus(16).runs("1h").at(10).build())
    d = s.cycle(10)
    assert len(d.preemptions) == 2 and {p.for_job for p in d.preemptions} == {"a1"}
    assert status(d, "a1")[1] == "reclaiming 16 GPUs from b (preempting 2 job(s))"
    # While the victims stop, nothing more is preempted.
    d = s.cycle(20)
    assert d.preemptions == () and "being reclaimed" in status(d, "a1")[1]
    for p in [r.spec.id for r in s.running.values() if r.preempting]:
        s.job_ended(p, 70)
    assert started(s.cycle(70)) == ["a1"]


def test_reclaim_waits_when_natural_ends_come_within_the_deadline() -> None:
    s = sched(reclaim_deadline=3600)
    submit(s, *[a_job(f"b{i}", "b").gpus(8).runs("30m").build() for i in range(4)])
    s.cycle(0)
    submit(s, a_job("a1", "a").gpus(16).runs("1h").at(10).build())
    d = s.cycle(10)
    assert d.preemptions == ()
    assert status(d, "a1")[0] == 1800.0


def test_no_preemption_for_a_tenant_above_its_entitlement() -> None:
    s = sched()
    submit(s, *[a_job(f"a{i}", "a").gpus(8).runs("2h").build() for i in range(2)],
           *[a_job(f"b{i}", "b").gpus(8).runs("2h").build() for i in range(2)])
    s.cycle(0)
    submit(s, a_job("a9", "a").gpus(8).runs("1h").at(5).build())  # a already holds its 16
    d = s.cycle(5000)
    assert d.preemptions == ()


def test_victims_minimise_lost_work_and_respect_min_runtime() -> None:
    s = sched()
    submit(s, a_job("fresh", "b").gpus(8).runs("5h").checkpoints("10m").build(),
           a_job("stale", "b").gpus(8).runs("5h").build(),
           a_job("young", "b").gpus(8).runs("5h").min_runtime("10h").build(),
           a_job("mid", "b").gpus(8).runs("5h").build())
    s.cycle(0)
    s.checkpointed("fresh", 3500)
    submit(s, a_job("a1", "a").gpus(8).runs("1h").at(3600).build())
    d = s.cycle(3600)
    assert [p.job_id for p in d.preemptions] == ["fresh"]
    assert d.preemptions[0].lost_gpu_seconds == 8 * 100
    submit(s, a_job("a2", "a").gpus(8).runs("1h").at(3600).build())
    d = s.cycle(3601)
    assert [p.job_id for p in d.preemptions] in (["mid"], ["stale"])  # never "young"


def test_urgent_preempts_preemptible_anywhere() -> None:
    s = sched(tree=a_tree().project("x", guarantee=0).project("y", guarantee=32))
    submit(s, *[a_job(f"p{i}", "y").gpus(8).runs("5h").preemptible().build() for i in range(4)])
    s.cycle(0)
    submit(s, a_job("u", "x").gpus(8).runs("1h").urgent().at(1).build())
    d = s.cycle(1)
    assert len(d.preemptions) == 1 and d.preemptions[0].reason == "urgent job needs preemptible capacity"


def test_borrow_limit_is_a_reason_and_is_never_exceeded() -> None:
    s = sched(tree=a_tree().project("a", guarantee=8, borrow_limit=8).project("b"))
    submit(s, *[a_job(f"a{i}", "a").gpus(8).runs("1h").build() for i in range(3)])
    d = s.cycle(0)
    assert len(d.starts) == 2
    assert status(d, "a2") == (3600.0, "project a is at its borrow limit (16 of 16 GPUs in use)")


def test_every_pending_job_gets_an_estimate_and_a_reason() -> None:
    s = Scheduler(preset("dev-32"), a_tree().project("p").build())
    submit(s, *[a_job(f"j{i}", "p").gpus(g).runs("1h").at(i).build() for i, g in enumerate([32, 8, 16, 1, 4])])
    d = s.cycle(10)
    assert started(d) == ["j0"]
    assert {p.job_id for p in d.pending} == set(s.pending) == {"j1", "j2", "j3", "j4"}
    for p in d.pending:
        assert p.reason and p.estimated_start is not None and p.estimated_start >= 3600


def test_reservation_reason_names_the_blocking_job() -> None:
    s = sched("gigafactory", tree=a_tree().project("p"), reservation_depth=1)
    submit(s, a_job("r", "p").gpus(24).runs("1h").build())
    s.cycle(0)
    submit(s, a_job("big", "p").gpus(32).runs("1h").at(1).build(),
           a_job("long", "p").gpus(8).runs("10h").at(2).build())
    d = s.cycle(5)
    assert status(d, "big")[0] == 3600.0
    assert status(d, "big")[1].startswith("waiting for 32 GPUs in the fewest blocks (8 free)")
    assert status(d, "long")[1] == "behind the reservation of job big"


def test_submit_rejects_impossible_jobs_clearly() -> None:
    s = Scheduler(preset("dev-32"), a_tree().project("p").build())
    with pytest.raises(ValueError, match="a gang of 64 GPUs can never run here; the largest possible gang is 32"):
        s.submit(a_job("x", "p").gpus(64).build())
    with pytest.raises(ValueError, match="unknown project 'q'"):
        s.submit(a_job("x", "q").build())
    with pytest.raises(ValueError, match="unknown accelerator 'TPU'"):
        s.submit(a_job("x", "p").on("TPU").build())
    with pytest.raises(ValueError, match="cannot fit in one NVLink domain"):
        s.submit(a_job("x", "p").gpus(16).topology(TopologyWish.NVLINK).build())
    s.submit(a_job("x", "p").build())
    with pytest.raises(ValueError, match="already known"):
        s.submit(a_job("x", "p").build())
    with pytest.raises(ValueError, match="time went backwards"):
        s.cycle(10)
        s.cycle(5)


def test_node_failure_returns_the_jobs_to_requeue() -> None:
    s = Scheduler(preset("dev-32"), a_tree().project("p").build())
    submit(s, a_job("j", "p").gpus(16).runs("1h").build())
    d = s.cycle(0)
    node = d.starts[0].placement.nodes[0][0]
    assert s.node_down(node, 10) == ["j"]
    submit(s, a_job("k", "p").gpus(16).runs("1h").at(10).build())
    d = s.cycle(10)  # the failed node is out of service at once, even before j has ended
    assert node not in [n for n, _ in d.starts[0].placement.nodes]
    s.job_ended("k", 10)
    s.job_ended("j", 10)
    s.submit(a_job("j", "p").gpus(16).runs("1h").at(10).build(), attained_service=160)
    d = s.cycle(10)
    assert node not in [n for n, _ in d.starts[0].placement.nodes]
    assert s.state.free_total == 8
    s.node_up(node, 20)
    assert s.state.free_total == 16
    s.check_invariants()


def test_explain_off_skips_statuses_but_not_decisions() -> None:
    def run(explain: bool) -> Decisions:
        s = Scheduler(preset("dev-32"), a_tree().project("p").build(), "gigafactory",
                      SchedulerConfig(explain=explain, reservation_depth=1))
        submit(s, *[a_job(f"j{i}", "p").gpus(g).runs("1h").at(i).build() for i, g in enumerate([32, 8, 16, 1, 4])])
        return s.cycle(10)

    on, off = run(True), run(False)
    assert on.starts == off.starts and [x.job_id for x in on.starts] == ["j0"]
    # With explanations every waiting job has a status and the head a reservation;
    # without, the cycle reports its starts and preemptions only (and stats).
    assert len(on.pending) == 4 and [r.job_id for r in on.reservations] == ["j1"]
    assert on.entitlements
    assert off.pending == () and off.reservations == () and off.entitlements == {}
    assert off.stats.started == 1 and off.stats.pending == 4


def test_kube_default_skips_what_does_not_fit() -> None:
    s = sched("kube-default")
    submit(s, a_job("r", "a").gpus(24).runs("1h").build())
    s.cycle(0)
    submit(s, a_job("big", "a").gpus(16).runs("1h").at(1).build(),
           a_job("small", "b").gpus(8).runs("10h").at(2).build())
    d = s.cycle(5)
    assert started(d) == ["small"]  # no head-of-line blocking, no reservation
    assert d.reservations == () and d.preemptions == ()


def _owed_beside_a_borrower(explain: bool, firm_behind: bool) -> Decisions:
    """One 4-GPU node. Partner B's job x holds 2 GPUs until t=1000; A has a guarantee of
    4, so B is above its entitlement and the urgent r (B, 4 GPUs) gets a *borrowing*
    reservation at 1000 that claims the 2 free GPUs. Optionally f (A, 4 GPUs) is then
    planned behind r on the same node (firm, at 1100; it claims nothing: r took the
    free GPUs). o (A, 2 GPUs, 1,500 s) is owed capacity and would end after both."""
    tree = a_tree().partner("A", 4).partner("B").project("a", "A", 4).project("b", "B")
    s = Scheduler(a_facility().nodes(1).gpus_per_node(4).per_block(1).build(), tree.build(), "gigafactory",
                  SchedulerConfig(explain=explain, reclaim_attempts=0))
    s.submit(a_job("x", "b").gpus(2).runs(1000).build())
    assert started(s.cycle(0)) == ["x"]
    jobs = [a_job("r", "b").gpus(4).runs(100).urgent().at(1)]
    if firm_behind:
        jobs.append(a_job("f", "a").gpus(4).runs(100).at(1))
    jobs.append(a_job("o", "a").gpus(2).runs(1500).at(2))
    for j in jobs:
        s.submit(j.build(), now=1)
    return s.cycle(2)


@pytest.mark.parametrize("explain", [True, False])
def test_a_job_owed_capacity_may_use_a_borrowing_reservations_claim(explain: bool) -> None:
    d = _owed_beside_a_borrower(explain, firm_behind=False)
    assert started(d) == ["o"]
    assert d.starts[0].reason == ("within its entitlement, ahead of the reservation of job r, "
                                  "which would borrow")
    if explain:
        assert [(r.job_id, r.start_time, r.firm) for r in d.reservations] == [("r", 1000.0, False)]


@pytest.mark.parametrize("explain", [True, False])
def test_it_may_not_when_a_firm_reservation_waits_behind_the_borrower_on_those_nodes(explain: bool) -> None:
    # Using r's claim would hold 2 GPUs of the node until 1502, past f's start at 1100.
    d = _owed_beside_a_borrower(explain, firm_behind=True)
    assert started(d) == []
    if explain:
        assert [(r.job_id, r.start_time, r.firm) for r in d.reservations] == [
            ("r", 1000.0, False), ("f", 1100.0, True), ("o", 1200.0, True)]
