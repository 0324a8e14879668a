"""The cycle's cross-cycle caches are exact: a cached answer is always the one the
uncached function gives for the same inputs (hypothesis over random cluster states)."""

from __future__ import annotations

import numpy as np
from builders import a_facility
from hypothesis import given, settings
from hypothesis import strategies as st

from gigafactory.core.backfill import PlanCache, plan
from gigafactory.core.jobs import TopologyWish
from gigafactory.core.placement import FailedPlacements, place
from gigafactory.core.state import ClusterState

FACILITY = a_facility().nodes(8).gpus_per_node(4).per_block(3).build()
WISHES = list(TopologyWish)
SIZES = [1, 3, 4, 8, 12, 16]


def _state(data: st.DataObject) -> ClusterState:
    s = ClusterState(FACILITY)
    for node in range(FACILITY.n_nodes):
        busy = data.draw(st.integers(0, 4), label=f"busy{node}")
        if busy:
            until = data.draw(st.sampled_from([50.0, 100.0, 150.0, 400.0]), label=f"until{node}")
            s.allocate(np.array([node]), np.array([busy]), until)
        if data.draw(st.booleans(), label=f"down{node}") and data.draw(st.booleans()):
            s.set_node_up(node, False)
    return s


def _same(a: tuple[float, np.ndarray, np.ndarray] | None, b: tuple[float, np.ndarray, np.ndarray] | None) -> bool:
    if a is None or b is None:
        return a is b
    return a[0] == b[0] and np.array_equal(a[1], b[1]) and np.array_equal(a[2], b[2])


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_cached_plans_equal_fresh_plans_at_any_later_time(data: st.DataObject) -> None:
    s = _state(data)
    avail = np.where(s.node_up, s.node_busy_until, np.inf)
    cache = PlanCache()
    nows = sorted(data.draw(st.lists(st.sampled_from([0.0, 10.0, 49.0, 50.0, 99.0, 120.0, 399.0]),
                                     min_size=1, max_size=5), label="nows"))
    shapes = data.draw(st.lists(st.tuples(st.sampled_from(SIZES), st.sampled_from(WISHES)),
                                min_size=1, max_size=6), label="shapes")
    for now in nows:  # time only moves forward, as between cycles
        cache.rotate()
        for gpus, wish in shapes:
            got = cache.plan(s, avail, gpus, None, wish, now)
            assert _same(got, plan(s, avail, gpus, None, wish, now)), (gpus, wish, now)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_remembered_failures_equal_fresh_placements(data: st.DataObject) -> None:
    s = _state(data)
    memo = FailedPlacements()
    for _ in range(data.draw(st.integers(1, 4), label="cycles")):
        memo.rotate()
        # few sizes, many asks: the same size comes back with another wish or state
        for gpus, wish in data.draw(st.lists(st.tuples(st.sampled_from(SIZES), st.sampled_from(WISHES)),
                                             min_size=1, max_size=10), label="asks"):
            got = memo.place(s, gpus, None, wish)
            fresh = place(s, gpus, None, wish)
            assert (got is None) == (fresh is None), (gpus, wish)
            if got is not None and fresh is not None:
                assert np.array_equal(got[0], fresh[0]) and np.array_equal(got[1], fresh[1])
        # between cycles the state may change: a node frees up or goes down
        node = data.draw(st.integers(0, FACILITY.n_nodes - 1), label="node")
        if data.draw(st.booleans(), label="repair"):
            if not s.node_up[node]:
                s.set_node_up(node, True)
        elif s.node_up[node]:
            s.set_node_up(node, False)
