"""The cycle's exact shortcuts, on hand-built situations where a wrong shortcut would
change what starts (the hypothesis properties in test_core_properties.py compare
whole runs with and without them)."""

from __future__ import annotations

import numpy as np
import pytest
from builders import a_facility, a_job, a_tree
from hypothesis import given, settings
from hypothesis import strategies as st

from gigafactory.core import admit
from gigafactory.core.admit import idle
from gigafactory.core.cycle import CycleContext
from gigafactory.core.facility import Facility, FacilitySpec
from gigafactory.core.jobs import TopologyWish
from gigafactory.core.placement import place
from gigafactory.core.scheduler import Scheduler, SchedulerConfig
from gigafactory.core.state import ClusterState


def _two_backfills(explain: bool) -> Scheduler:
    """Node 0 has 2 free GPUs until t=100, node 1 is busy until t=1000. The head job
    (4 GPUs) reserves node 0 at t=100 and claims its 2 free GPUs; two short 1-GPU jobs
    behind it both fit in that claim before t=100."""
    f = a_facility().nodes(2).gpus_per_node(4).per_block(2).build()
    s = Scheduler(f, a_tree().project("p").build(), "easy-backfill", SchedulerConfig(explain=explain))
    s.submit(a_job("a0", "p").gpus(2).runs(100).build())
    s.submit(a_job("a1", "p").gpus(4).runs(1000).build())
    assert {x.job_id for x in s.cycle(0).starts} == {"a0", "a1"}
    for spec in (a_job("b", "p").gpus(4).runs(500).at(1).build(),
                 a_job("c", "p").gpus(1).runs(50).at(1).build(),
                 a_job("d", "p").gpus(1).runs(50).at(1).build()):
        s.submit(spec, now=1)
    return s


@pytest.mark.parametrize("explain", [True, False])
def test_backfill_into_a_claim_goes_on_after_the_free_gpus_run_out(explain: bool) -> None:
    # After c backfills, no GPU is free and one is claimed: the cycle must not stop
    # there (d still fits in the claim), with or without explanations.
    s = _two_backfills(explain)
    d = s.cycle(1)
    assert [x.job_id for x in d.starts] == ["c", "d"]
    assert all(x.reason.startswith("backfilled") for x in d.starts)
    assert s.state.free_total == 0


def test_a_cycle_settles_only_when_nothing_fits_free_or_claimed_gpus() -> None:
    s = _two_backfills(explain=False)
    s._accrue(1)
    ctx = CycleContext(s, 1.0, s.policy)
    assert not idle(s, ctx)  # 2 free GPUs, the smallest queued job needs 1
    s.state.allocate(np.array([0]), np.array([2]), 100.0)  # nothing free now ...
    assert idle(s, ctx)
    ctx.claimed, ctx.claimed_of = 1, {0: 1}  # ... but one GPU is claimed: d could backfill
    assert not idle(s, ctx)


def test_every_change_of_free_counts_or_node_state_bumps_the_state_version() -> None:
    st = ClusterState(a_facility().nodes(2).gpus_per_node(4).per_block(2).build())
    seen = [st.version]
    st.allocate(np.array([0]), np.array([3]), 50.0)
    seen.append(st.version)
    st.allocate(np.array([0, 1]), np.array([1, 4]), 60.0)
    seen.append(st.version)
    st.release(np.array([0]), np.array([3]))
    seen.append(st.version)
    st.set_node_up(1, False)
    seen.append(st.version)
    st.set_node_up(1, True)
    seen.append(st.version)
    assert seen == sorted(set(seen)), seen  # strictly increasing


def test_a_remembered_backfill_failure_is_forgotten_once_the_state_changes() -> None:
    s = _two_backfills(explain=False)
    ctx = CycleContext(s, 1.0, s.policy)
    tried = (4, None, "any", ())
    assert not admit.failed_before(ctx, tried)
    ctx.backfill_failed[tried] = s.state.version
    assert admit.failed_before(ctx, tried)
    s.state.allocate(np.array([0]), np.array([1]), 100.0)
    assert not admit.failed_before(ctx, tried)


def _mixed() -> Facility:
    """Two node sizes of one type plus a second type: gangs between the two sizes may
    span small nodes, which the quick test must not rule out."""
    acc = [{"name": n, "memory_gb": 80, "bf16_tflops": 900, "watts": 700} for n in ("H100", "B200")]
    pools = [{"accelerator": "H100", "nodes": 4, "gpus_per_node": 4, "nodes_per_rack": 2, "nodes_per_block": 2},
             {"accelerator": "H100", "nodes": 3, "gpus_per_node": 8, "nodes_per_rack": 1, "nodes_per_block": 3},
             {"accelerator": "B200", "nodes": 2, "gpus_per_node": 8, "nodes_per_rack": 2, "nodes_per_block": 2}]
    return Facility.from_spec(FacilitySpec.model_validate(
        {"name": "mixed", "accelerators": acc, "sites": [{"name": "s", "pools": pools}]}))


FACILITIES = [a_facility().nodes(6).gpus_per_node(4).per_block(2).build(), _mixed()]


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_a_gang_ruled_out_by_the_quick_test_never_finds_a_placement(data: st.DataObject) -> None:
    f = data.draw(st.sampled_from(FACILITIES), label="facility")
    s = ClusterState(f)
    for node in range(f.n_nodes):
        cap = int(f.node_gpus[node])  # wholly free and full nodes are common
        busy = data.draw(st.one_of(st.sampled_from([0, cap]), st.integers(0, cap)), label=f"busy{node}")
        if busy:
            s.allocate(np.array([node]), np.array([busy]), 100.0)
        if data.draw(st.integers(0, 5), label=f"down{node}") == 0:
            s.set_node_up(node, False)
    accels: list[int | None] = [None, *range(len(f.accel_names))]
    accel = data.draw(st.sampled_from(accels), label="accel")
    gpus = data.draw(st.one_of(st.integers(1, 9), st.integers(1, 40)), label="gpus")
    if s.could_place(gpus, accel):
        return
    for g in range(gpus, gpus + 17):  # bigger gangs of the same shape are ruled out too
        for wish in TopologyWish:
            assert place(s, g, accel, wish) is None, (g, accel, wish)


def _three_nodes(explain: bool, running: list[tuple[int, float]], depth: int = 4) -> Scheduler:
    """Three 4-GPU nodes in one block, one project, the default policy, with the given
    (GPUs, runtime) jobs started at t=0."""
    f = a_facility().nodes(3).gpus_per_node(4).per_block(3).build()
    s = Scheduler(f, a_tree().project("p").build(), "gigafactory",
                  SchedulerConfig(explain=explain, reservation_depth=depth))
    for i, (g, t) in enumerate(running):
        s.submit(a_job(f"a{i}", "p").gpus(g).runs(t).build())
    assert len(s.cycle(0).starts) == len(running)
    return s


def _queue_at_1(s: Scheduler, *jobs: tuple[str, int, float]) -> None:
    for name, g, t in jobs:
        s.submit(a_job(name, "p").gpus(g).runs(t).at(1).build(), now=1)


def _behind_futile_jobs(futile: int, explain: bool, then: int = 0) -> list[str]:
    """Job r1 (4 GPUs) reserves node 0 at t=100 and claims its 2 free GPUs; r2 (8 GPUs)
    reserves nodes 1-2 at t=1000 and claims nothing. Behind them, ``futile`` 1-GPU jobs
    that run 500 s could only backfill into a claim of a reservation starting after
    they end, and none does; with ``then``, a short job that backfills ("mid") and
    ``then`` more such jobs follow; the last job (50 s) fits in r1's claim."""
    s = _three_nodes(explain, [(2, 100), (8, 1000)], depth=2)
    _queue_at_1(s, ("r1", 4, 500), ("r2", 8, 500), *((f"f{i:02d}", 1, 500) for i in range(futile)))
    if then:
        _queue_at_1(s, ("mid", 1, 50), *((f"g{i:02d}", 1, 500) for i in range(then)))
    _queue_at_1(s, ("short", 1, 50))
    return [x.job_id for x in s.cycle(1).starts]


@pytest.mark.parametrize("explain", [True, False])
def test_jobs_that_cannot_backfill_still_use_up_the_backfill_budget_in_turn(explain: bool) -> None:
    # Every job the tail admits for backfill uses one of the cycle's 64 attempts, even
    # when no reservation can make room for it; skipping such jobs without explanations
    # must keep that count, or the short job would backfill behind 70 of them.
    assert _behind_futile_jobs(60, explain) == ["short"]
    assert _behind_futile_jobs(70, explain) == []
    # 63 attempts are left after the head: 40 + mid + 22 use them up before "short"
    assert _behind_futile_jobs(40, explain, then=21) == ["mid", "short"]
    assert _behind_futile_jobs(40, explain, then=22) == ["mid"]


def _behind_failed_backfills(failing: int, explain: bool) -> list[str]:
    """Job r (8 GPUs) reserves the two nodes that each have 1 GPU free until t=100 and
    claims both GPUs. Behind it, ``failing`` short 2-GPU jobs could use both claimed
    GPUs together but not on one node: the first backfill attempt fails and the others
    are known to fail; the last job (1 GPU) fits in a claim."""
    s = _three_nodes(explain, [(3, 100), (3, 100), (4, 1000)])
    _queue_at_1(s, ("r", 8, 500), *((f"f{i:02d}", 2, 50) for i in range(failing)), ("short", 1, 50))
    return [x.job_id for x in s.cycle(1).starts]


@pytest.mark.parametrize("explain", [True, False])
def test_backfill_attempts_known_to_fail_still_count(explain: bool) -> None:
    assert _behind_failed_backfills(60, explain) == ["short"]
    assert _behind_failed_backfills(70, explain) == []


@pytest.mark.parametrize("explain", [True, False])
def test_a_job_ending_as_a_reservation_starts_may_backfill_into_its_claim(explain: bool) -> None:
    # r1 starts at t=100; at t=1 a 99 s job ends exactly then.
    s = _three_nodes(explain, [(2, 100), (8, 1000)], depth=2)
    _queue_at_1(s, ("r1", 4, 500), ("r2", 8, 500), ("late", 1, 100), ("exact", 1, 99))
    assert [x.job_id for x in s.cycle(1).starts] == ["exact"]


@pytest.mark.parametrize("k", [2, 12])  # scalar updates for a few nodes, array updates for many
def test_an_update_that_would_overflow_a_node_changes_nothing(k: int) -> None:
    st = ClusterState(a_facility().nodes(16).gpus_per_node(4).per_block(4).build())
    nodes = np.arange(k)
    st.allocate(nodes, np.full(k, 2), 50.0)
    before = (st.node_free.copy(), st.block_free.copy(), st.block_whole.copy(), st.free_total, st.version)
    counts = np.full(k, 1)
    counts[-1] = 3  # the last node has only 2 free
    with pytest.raises(ValueError, match="free count"):
        st.allocate(nodes, counts, 60.0)
    after = (st.node_free, st.block_free, st.block_whole, st.free_total, st.version)
    assert all(np.array_equal(a, b) for a, b in zip(before[:3], after[:3], strict=True))
    assert before[3:] == after[3:]  # the version too: nothing changed
    st.check()


@pytest.mark.parametrize("explain", [True, False])
def test_the_lean_tail_loop_rescans_after_a_failed_size_and_after_each_start(explain: bool) -> None:
    """Nodes 0-1 are busy until t=100, node 2 has 1 GPU free, node 3 has 2. The head job
    (8 GPUs) reserves nodes 0-1 and claims nothing, so only "might fit" can help the tail
    (the lean loop): a needs 3 GPUs on one node and fails, which lowers the limit to 2;
    b (2) starts on node 3, then c (1) on node 2, and the cycle has settled."""
    from unittest.mock import patch

    from gigafactory.core import tail

    f = a_facility().nodes(4).gpus_per_node(4).per_block(4).build()
    s = Scheduler(f, a_tree().project("p").build(), "easy-backfill", SchedulerConfig(explain=explain))
    for name, g, runs in (("x", 8, 100), ("y", 3, 500), ("z", 2, 2000)):
        s.submit(a_job(name, "p").gpus(g).runs(runs).build())
    assert [x.job_id for x in s.cycle(0).starts] == ["x", "y", "z"]
    for name, g in (("h", 8), ("a", 3), ("b", 2), ("c", 1)):
        s.submit(a_job(name, "p").gpus(g).runs(50).at(1).build(), now=1)
    lean = tail.admit_fitting
    calls: list[int] = []

    def counted(*args: object) -> None:
        calls.append(1)
        lean(*args)  # type: ignore[arg-type]

    with patch.object(tail, "admit_fitting", counted):
        d = s.cycle(1)
    assert calls, "the lean loop was not used"
    assert [x.job_id for x in d.starts] == ["b", "c"]
    # a cycle that need not explain itself reports its starts and preemptions only
    assert [r.job_id for r in d.reservations] == (["h"] if explain else [])
    assert {p.job_id for p in d.pending} == ({"h", "a"} if explain else set())
    assert d.stats.reserved == 1 and d.stats.started == 2
    assert s.state.free_total == 0


def test_a_failed_backfill_attempt_leaves_free_counts_claims_and_version_as_they_were() -> None:
    """Nodes 0 and 1 each have 1 GPU free. The head job (8 GPUs) reserves both and claims
    those 2 GPUs; a short 2-GPU job may backfill into the claims but needs 2 free on one
    node, so its attempt fails. It must put back exactly what it took, and the version
    stays, so the tail does not rescan and the memo key holds."""
    from gigafactory.core.cycle import entitle, snapshot

    f = a_facility().nodes(2).gpus_per_node(4).per_block(2).build()
    s = Scheduler(f, a_tree().project("p").build(), "easy-backfill", SchedulerConfig(explain=False))
    s.submit(a_job("a0", "p").gpus(3).runs(100).build())
    s.submit(a_job("a1", "p").gpus(3).runs(1000).build())
    assert {x.job_id for x in s.cycle(0).starts} == {"a0", "a1"}
    s.submit(a_job("b", "p").gpus(8).runs(500).at(1).build(), now=1)
    s.submit(a_job("c", "p").gpus(2).runs(50).at(1).build(), now=1)
    ctx = snapshot(s, 1.0)
    entitle(ctx)
    admit.admit(ctx, s.pending["b"])
    assert [r.job.spec.id for r in ctx.reservations] == ["b"] and ctx.claimed == 2
    version, free = s.state.version, s.state.node_free.copy()
    claims = [(r.claim_nodes.tolist(), r.claim_counts.tolist()) for r in ctx.reservations]
    assert admit.try_backfill(ctx, s.pending["c"]) is None
    assert s.state.version == version
    assert s.state.node_free.tolist() == free.tolist() and ctx.claimed == 2
    assert [(r.claim_nodes.tolist(), r.claim_counts.tolist()) for r in ctx.reservations] == claims
    assert admit.failed_before(ctx, (2, None, TopologyWish.ANY, (id(ctx.reservations[0]),)))


@pytest.mark.parametrize("explain", [True, False])
def test_a_queue_of_one_tenant_is_ordered_without_entitlements_when_nothing_else_reads_them(explain: bool) -> None:
    from gigafactory.core.cycle import entitle, order, snapshot

    f = a_facility().nodes(1).gpus_per_node(4).build()
    s = Scheduler(f, a_tree().project("a").project("b").build(), "gigafactory", SchedulerConfig(explain=explain))
    s.submit(a_job("x", "a").gpus(4).runs(100).build())
    assert [d.job_id for d in s.cycle(0).starts] == ["x"]
    for name, t, low in (("p1", 1, True), ("n1", 2, False), ("p2", 3, True), ("n2", 4, False)):
        job = a_job(name, "a").gpus(2).runs(50).at(t)
        s.submit((job.preemptible() if low else job).build(), now=t)
    ctx = snapshot(s, 5.0)
    entitle(ctx)
    assert ctx.ent.shape[0] == (len(s.tree) if explain else 0)  # only explanations read them
    assert [s.queue.ids[i] for i in order(ctx).tolist()] == ["n1", "n2", "p1", "p2"]  # class, then age
    s.submit(a_job("b1", "b").gpus(2).runs(50).at(6).build(), now=6)
    ctx = snapshot(s, 6.0)
    entitle(ctx)
    assert ctx.ent.shape[0] == len(s.tree)  # two tenants: the order ranks them


def test_the_queue_counters_are_checked_against_its_rows() -> None:
    s = _two_backfills(explain=False)
    s.check_invariants()
    s.queue._tenants[99] = 1
    with pytest.raises(AssertionError, match="tenant counts drifted"):
        s.check_invariants()


def test_usage_accrues_on_the_projects_gpus_and_that_counter_is_checked() -> None:
    f = a_facility().nodes(1).gpus_per_node(4).build()
    s = Scheduler(f, a_tree().project("a").project("b").build(), "gigafactory",
                  SchedulerConfig(explain=False, usage_half_life=float("inf")))
    s.submit(a_job("x", "a").gpus(3).runs(100).build())
    assert [d.job_id for d in s.cycle(0).starts] == ["x"]
    s.cycle(10.0)
    assert s.usage == {"a": 30.0, "b": 0.0}  # 3 GPUs for 10 s, nothing for b
    s.job_ended("x", 20.0)
    s.cycle(30.0)
    assert s.usage == {"a": 60.0, "b": 0.0}  # nothing accrues once it ended
    s.check_invariants()
    s.used[1] += 1
    with pytest.raises(AssertionError, match="per-tenant usage counters drifted"):
        s.check_invariants()
