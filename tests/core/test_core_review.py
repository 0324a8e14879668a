"""Review of the scheduling core: edge cases found by reading the code.

Each test pins down a bug found in review (now fixed) or behaviour checked to be
right: heterogeneous pools, several sites, failed nodes, lend and borrow limits,
reasons and estimates per accelerator type.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from builders import a_facility, a_job, a_tree

from gigafactory.core.backfill import plan
from gigafactory.core.decisions import Decisions
from gigafactory.core.facility import Facility, FacilitySpec
from gigafactory.core.jobs import JobSpec, Placement, TopologyWish
from gigafactory.core.scheduler import Scheduler, SchedulerConfig
from gigafactory.core.shares import ShareTree, TenantKind, TenantSpec, entitlements
from gigafactory.core.state import ClusterState

_ACCELS = [
    {"name": "H100", "memory_gb": 80, "bf16_tflops": 989, "watts": 700},
    {"name": "B200", "memory_gb": 192, "bf16_tflops": 2250, "watts": 1000},
]


def pool(accel: str, nodes: int, gpus_per_node: int = 8, per_block: int = 2) -> dict[str, Any]:
    return {"accelerator": accel, "nodes": nodes, "gpus_per_node": gpus_per_node,
            "nodes_per_rack": 1, "nodes_per_block": per_block}


def facility(*sites: list[dict[str, Any]]) -> Facility:
    """A facility with one site per argument, each a list of pools (the builder has one pool)."""
    return Facility.from_spec(FacilitySpec.model_validate({
        "name": "review", "accelerators": _ACCELS,
        "sites": [{"name": f"site-{i}", "pools": pools} for i, pools in enumerate(sites)],
    }))


def status(d: Decisions, job: str) -> tuple[float | None, str]:
    for p in d.pending:
        if p.job_id == job:
            return p.estimated_start, p.reason
    raise AssertionError(f"no status for {job}")


def started(d: Decisions) -> list[str]:
    return [s.job_id for s in d.starts]


def submit(s: Scheduler, *jobs: JobSpec) -> None:
    for j in jobs:
        s.submit(j)


# ------------------------------------------------------------ heterogeneous pools
def test_gang_without_accelerator_never_spans_types_in_a_mixed_site() -> None:
    f = facility([pool("B200", 4, gpus_per_node=4, per_block=4), pool("H100", 4)])
    s = Scheduler(f, a_tree().project("p").build())
    s.submit(a_job("big", "p").gpus(24).runs("1h").build())  # fits on 3 H100 nodes
    d = s.cycle(0)
    assert started(d) == ["big"]
    s.check_invariants()  # today: "gang spans sites or accelerator types"


def test_gang_without_accelerator_starts_on_the_smaller_node_pool() -> None:
    f = facility([pool("H100", 2, per_block=1), pool("B200", 4, gpus_per_node=4, per_block=2)])
    s = Scheduler(f, a_tree().project("p").build())
    s.submit(a_job("h", "p").gpus(8).on("H100").runs("1h").build())
    s.cycle(0)
    s.submit(a_job("big", "p").gpus(16).runs("1h").build())  # the 4 idle B200 nodes hold it
    d = s.cycle(1)
    assert started(d) == ["big"]


def test_reservation_plan_stays_within_node_capacity_in_a_mixed_site() -> None:
    f = facility([pool("H100", 2, per_block=1), pool("B200", 4, gpus_per_node=4, per_block=2)])
    st = ClusterState(f)
    avail = np.maximum(st.node_busy_until, 0.0)  # as the cycle builds it: every node free now
    got = plan(st, avail, 16, None, TopologyWish.ANY, 0.0)
    assert got is not None
    _, nodes, counts = got
    assert (counts <= f.node_gpus[nodes]).all(), list(zip(nodes.tolist(), counts.tolist(), strict=True))
    assert len(set(f.node_accel[nodes].tolist())) == 1


def test_multi_node_gang_on_a_small_node_pool_gets_a_reservation() -> None:
    f = facility([pool("H100", 2), pool("B200", 4, gpus_per_node=4)])
    s = Scheduler(f, a_tree().project("p").build())
    submit(s, *[a_job(f"six{i}", "p").gpus(6).on("B200").runs("1h").build() for i in range(3)])
    d = s.cycle(0)
    assert started(d) == ["six0", "six1"]  # each on two B200 nodes
    at, reason = status(d, "six2")
    assert "nodes are down" not in reason  # no node is down
    assert at == 3600.0


def test_submit_rejects_an_nvlink_gang_bigger_than_its_accelerators_domain() -> None:
    f = facility([pool("H100", 2), pool("B200", 4, gpus_per_node=4)])
    s = Scheduler(f, a_tree().project("p").build())
    with pytest.raises(ValueError, match="cannot fit in one NVLink domain"):
        s.submit(a_job("nv", "p").gpus(6).on("B200").topology(TopologyWish.NVLINK).build())


def test_reclaim_looks_at_the_accelerator_a_victim_actually_runs_on() -> None:
    f = facility([pool("H100", 2), pool("B200", 2)])
    s = Scheduler(f, a_tree().project("a", guarantee=16).project("b").build(), "gigafactory",
                  SchedulerConfig(reclaim_deadline=600))
    submit(s, a_job("b0", "b").gpus(16).runs("10h").build(),  # lands on H100
           a_job("b1", "b").gpus(16).runs("10h").build())     # lands on B200
    s.cycle(0)
    s.checkpointed("b1", 990)  # b1 loses less work, so it is looked at first: useless for H100
    s.submit(a_job("a1", "a").gpus(16).on("H100").runs("1h").at(10).build())
    d = s.cycle(1000)  # the reclaim deadline has passed; a is under its guarantee of 16
    assert [p.job_id for p in d.preemptions] == ["b0"]


def test_reason_never_names_a_reservation_on_another_accelerator() -> None:
    f = facility([pool("H100", 2), pool("B200", 2)])
    s = Scheduler(f, a_tree().project("p").build(), "gigafactory", SchedulerConfig(reservation_depth=1))
    submit(s, a_job("h", "p").gpus(16).on("H100").runs("1h").build(),
           a_job("b", "p").gpus(8).on("B200").runs("1h").build())
    s.cycle(0)
    submit(s, a_job("bb", "p").gpus(16).on("B200").runs("1h").at(1).build(),
           a_job("hh", "p").gpus(8).on("H100").runs("2h").at(2).build())
    d = s.cycle(5)
    assert [r.job_id for r in d.reservations] == ["bb"]
    assert "bb" not in status(d, "hh")[1]  # H100 is simply full until t=3600


def test_estimate_respects_the_accelerator_type() -> None:
    f = facility([pool("H100", 2), pool("B200", 2)])
    s = Scheduler(f, a_tree().project("p").build(), "las")
    s.submit(a_job("h", "p").gpus(16).on("H100").runs("1h").build())
    s.cycle(0)
    s.submit(a_job("h2", "p").gpus(8).on("H100").runs("1h").at(10).build())
    d = s.cycle(10)
    at, reason = status(d, "h2")
    assert reason == "waiting for 8 GPUs on one node (0 free)"
    assert at is not None and at >= 3600.0  # today: 10 (now), because 16 B200 GPUs are idle


# ------------------------------------------------------------ nodes down
def test_urgent_reclaim_with_a_victim_on_a_down_node_does_not_crash() -> None:
    s = Scheduler(a_facility().nodes(4).per_block(2).build(), a_tree().project("x").project("y").build())
    submit(s, *[a_job(f"p{i}", "y").gpus(8).runs("5h").preemptible().build() for i in range(4)])
    s.cycle(0)
    assert s.node_down(0, 100) == ["p0"]  # the driver has not ended p0 yet
    s.submit(a_job("u", "x").gpus(16).runs("1h").urgent().at(100).build())
    d = s.cycle(100)
    s.check_invariants()
    assert "p0" not in [p.job_id for p in d.preemptions]  # its GPUs are out of service anyway
    assert len(d.preemptions) == 2


def test_job_ended_on_a_down_node_keeps_its_gpus_out_of_service() -> None:
    s = Scheduler(a_facility().nodes(2).per_block(2).build(), a_tree().project("p").build())
    s.submit(a_job("j", "p").gpus(16).runs("1h").build())
    s.cycle(0)
    assert s.node_down(1, 5) == ["j"]
    s.job_ended("j", 5)
    s.submit(a_job("k", "p").gpus(16).runs("1h").at(5).build())
    d = s.cycle(5)
    assert d.starts == () and d.reservations == ()
    assert status(d, "k") == (None, "waiting for 16 GPUs in the fewest blocks (8 free); "
                                    "no feasible start while nodes are down")
    s.node_up(1, 6)
    assert started(s.cycle(6)) == ["k"]
    s.check_invariants()


# ------------------------------------------------------------ placement
def test_block_gang_uses_a_wholly_free_block_beyond_the_first_candidates() -> None:
    s = Scheduler(a_facility().nodes(10).per_block(2).build(), a_tree().project("p").build())
    for n in range(8):  # blocks 0-3: every node has 6 of 8 GPUs free; block 4 is idle
        s.restore_running(a_job(f"s{n}", "p").gpus(2).runs("10h").build(), Placement(((n, 2),)), 0.0)
    s.submit(a_job("blk", "p").gpus(12).runs("1h").topology(TopologyWish.BLOCK).build())
    d = s.cycle(1)
    assert started(d) == ["blk"]  # today: a reservation "at t=1" that never starts


def test_gangs_never_span_sites() -> None:
    f = facility([pool("H100", 2)], [pool("H100", 2)])
    s = Scheduler(f, a_tree().project("p").build())
    with pytest.raises(ValueError, match="the largest possible gang is 16 H100 GPUs in one site"):
        s.submit(a_job("x", "p").gpus(24).on("H100").build())
    submit(s, a_job("a", "p").gpus(8).runs("1h").build(), a_job("b", "p").gpus(16).runs("1h").build())
    d = s.cycle(0)
    assert started(d) == ["a", "b"]
    sites = {f.node_site[n] for n, _ in d.starts[1].placement.nodes}
    assert len(sites) == 1
    s.check_invariants()


# ------------------------------------------------------------ limits and reasons
def test_lend_limited_wait_is_not_estimated_to_start_now() -> None:
    s = Scheduler(a_facility().nodes(4).per_block(2).build(),
                  a_tree().project("owner", guarantee=32, lend_limit=0).project("b").build())
    s.submit(a_job("j", "b").gpus(8).runs("1h").build())
    d = s.cycle(10)
    at, reason = status(d, "j")
    assert d.starts == ()
    assert reason == "waiting for 8 GPUs: 32 idle GPUs are kept for their owners (lend limits)"
    assert at != 10  # nothing runs, so no start is foreseeable: None


def test_lend_limit_lets_others_use_exactly_the_lendable_part() -> None:
    s = Scheduler(a_facility().nodes(4).per_block(2).build(),
                  a_tree().project("owner", guarantee=32, lend_limit=8).project("b").build())
    submit(s, *[a_job(f"j{i}", "b").gpus(8).runs("1h").build() for i in range(3)])
    d = s.cycle(0)
    assert started(d) == ["j0"]
    s.submit(a_job("o", "owner").gpus(24).runs("1h").at(1).build())
    assert started(s.cycle(1)) == ["o"]  # the owner gets the rest at once
    s.check_invariants()


def test_gang_above_its_projects_cap_is_refused_or_explained() -> None:
    s = Scheduler(a_facility().nodes(4).per_block(2).build(),
                  a_tree().project("p", guarantee=0, borrow_limit=8).build())
    try:
        s.submit(a_job("x", "p").gpus(16).runs("1h").build())
    except ValueError as exc:
        assert "borrow limit" in str(exc)
        return
    _, reason = status(s.cycle(0), "x")
    assert "0 of 8 GPUs in use" not in reason and "more than" in reason


def test_zero_guarantees_share_by_weight_and_never_above_demand() -> None:
    tree = ShareTree([TenantSpec("a", weight=1.0), TenantSpec("b", weight=3.0), TenantSpec("c")])
    demand = [0.0, 100.0, 100.0, 2.0]
    ent = entitlements(tree, 34.0, demand)  # type: ignore[arg-type]
    got = {tree.names[i]: round(float(ent[i]), 6) for i in range(1, len(tree))}
    assert got == {"a": 8.0, "b": 24.0, "c": 2.0}


def test_lend_limit_keeps_idle_guarantee_out_of_entitlements() -> None:
    tree = ShareTree([
        TenantSpec("lender", TenantKind.PARTNER, guarantee=24, lend_limit=8),
        TenantSpec("l", parent="lender", guarantee=24),
        TenantSpec("other", TenantKind.PARTNER), TenantSpec("o", parent="other"),
    ])
    demand = [0.0] * len(tree)
    demand[tree.index["o"]] = 32.0
    ent = entitlements(tree, 32.0, demand)  # type: ignore[arg-type]
    assert float(ent[tree.index["o"]]) == pytest.approx(16.0)  # 8 unguaranteed + 8 lent


# ------------------------------------------------------------ preemption
def test_reclaim_settles_without_thrashing() -> None:
    s = Scheduler(a_facility().nodes(4).per_block(2).build(),
                  a_tree().project("a", guarantee=16).project("b", guarantee=16).build(),
                  "gigafactory", SchedulerConfig(reclaim_deadline=0, preemption_grace=30))
    submit(s, *[a_job(f"a{i}", "a").gpus(8).runs("10h").build() for i in range(4)])
    s.cycle(0)
    submit(s, *[a_job(f"b{i}", "b").gpus(8).runs("10h").at(10).build() for i in range(4)])
    preempted: list[str] = []
    now = 10.0
    for _ in range(8):
        d = s.cycle(now)
        s.check_invariants()
        for p in d.preemptions:
            preempted.append(p.job_id)
            rj = s.job_ended(p.job_id, now + 30)
            s.submit(rj.spec, attained_service=rj.attained(now + 30), now=now + 30)
        now += 60.0
    assert sorted(preempted) == ["a0", "a1"]  # guarantees of 16 each: reclaimed, then stable
    held = {p: sum(r.spec.gpus for r in s.running.values() if r.spec.project == p) for p in "ab"}
    assert held == {"a": 16, "b": 16}


def test_requeued_job_keeps_its_attained_service_under_las() -> None:
    s = Scheduler(a_facility().nodes(1).per_block(1).build(), a_tree().project("p").build(), "las")
    s.submit(a_job("old", "p").gpus(8).runs("10h").build())
    s.cycle(0)
    rj = s.job_ended("old", 7200)  # stopped after 2 h on 8 GPUs: 57,600 GPU-s, queue 2
    s.submit(rj.spec, attained_service=rj.attained(7200), now=7200)
    s.submit(a_job("new", "p").gpus(8).runs("10h").at(7300).build())
    assert started(s.cycle(7300)) == ["new"]


# ------------------------------------------------------------ empty inputs
@pytest.mark.parametrize("policy", ["fifo", "easy-backfill", "las", "srtf", "gigafactory"])
def test_empty_queue_cycle_decides_nothing(policy: str) -> None:
    s = Scheduler(a_facility().build(), a_tree().project("p").build(), policy)
    d = s.cycle(0)
    assert (d.starts, d.preemptions, d.reservations, d.pending) == ((), (), (), ())
    assert d.stats.free_gpus == 32 and d.entitlements == {"p": 0.0}


def test_no_preemption_without_guarantees() -> None:
    """Tenants without guarantees share idle capacity by fair share, never by preemption."""
    s = Scheduler(a_facility().nodes(4).per_block(2).build(), a_tree().project("a").project("b").build(),
                  "gigafactory", SchedulerConfig(reclaim_deadline=0))
    submit(s, *[a_job(f"a{i}", "a").gpus(8).runs("10h").build() for i in range(4)])
    s.cycle(0)
    submit(s, *[a_job(f"b{i}", "b").gpus(8).runs("10h").at(10).build() for i in range(4)])
    assert s.cycle(10).preemptions == ()
    assert s.cycle(5000).preemptions == ()
