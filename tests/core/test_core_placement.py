"""Placement, table-driven on each preset and on small hand-made facilities."""

from __future__ import annotations

import numpy as np
import pytest
from builders import a_facility

from gigafactory.core.facility import preset
from gigafactory.core.jobs import TopologyWish
from gigafactory.core.placement import place
from gigafactory.core.state import ClusterState


def take(st: ClusterState, gpus: int, wish: TopologyWish = TopologyWish.ANY) -> list[tuple[int, int]]:
    got = place(st, gpus, None, wish)
    assert got is not None, f"{gpus} GPUs should fit"
    st.allocate(got[0], got[1], 100.0)
    return list(zip(got[0].tolist(), got[1].tolist(), strict=True))


@pytest.mark.parametrize("name", ["dev-32", "ai-factory-25k", "gigafactory-100k"])
@pytest.mark.parametrize("gpus", [1, 3, 8, 12, 64, 1024, 2048])
def test_gang_gets_exactly_its_size_on_each_preset(name: str, gpus: int) -> None:
    st = ClusterState(preset(name))
    if gpus > st.facility.total_gpus:
        assert place(st, gpus, None, TopologyWish.ANY) is None
        return
    alloc = take(st, gpus)
    assert sum(c for _, c in alloc) == gpus
    assert len({n for n, _ in alloc}) == len(alloc)
    st.check()


@pytest.mark.parametrize("name", ["ai-factory-25k", "gigafactory-100k"])
def test_big_gangs_use_whole_nodes_and_fewest_blocks(name: str) -> None:
    f = preset(name)
    st = ClusterState(f)
    one_block = take(st, 1024, TopologyWish.BLOCK)
    assert len({int(f.node_block[n]) for n, _ in one_block}) == 1
    assert all(c == 8 for _, c in one_block)
    two = take(st, 2048, TopologyWish.FEWEST_BLOCKS)
    assert len({int(f.node_block[n]) for n, _ in two}) == 2


def test_small_jobs_best_fit_into_partly_used_nodes() -> None:
    st = ClusterState(a_facility().nodes(4).per_block(2).build())
    first = take(st, 3)          # node 0 now has 5 free
    second = take(st, 6)         # does not fit node 0: a whole node
    third = take(st, 5)          # best fit: exactly node 0's 5 free
    assert third[0][0] == first[0][0]
    assert second[0][0] != first[0][0]
    fourth = take(st, 2)         # best fit: node with 2 free (the 6-GPU node)
    assert fourth[0][0] == second[0][0]


def test_small_jobs_pack_into_the_busiest_block() -> None:
    f = a_facility().nodes(4).per_block(2).build()
    st = ClusterState(f)
    take(st, 8)  # fill node 0 (block 0)
    nxt = take(st, 8)  # a whole node: in block 0 (fewest whole free nodes), keeping block 1 whole
    assert f.node_block[nxt[0][0]] == 0
    assert st.block_whole.tolist() == [0, 2]


def test_single_node_jobs_never_span_nodes() -> None:
    st = ClusterState(a_facility().nodes(2).per_block(2).build())
    take(st, 5)
    take(st, 5)  # each node has 3 free: 6 free in total
    assert place(st, 4, None, TopologyWish.ANY) is None


def test_block_wish_is_all_or_nothing() -> None:
    f = a_facility().nodes(4).per_block(2).build()
    st = ClusterState(f)
    take(st, 1)      # block 0 loses its wholeness on one node
    assert place(st, 16, None, TopologyWish.BLOCK) is not None
    take(st, 16, TopologyWish.BLOCK)  # block 1
    assert place(st, 16, None, TopologyWish.BLOCK) is None
    assert place(st, 8, None, TopologyWish.BLOCK) is not None
    st.check()


def test_nvlink_wish_needs_one_domain() -> None:
    st = ClusterState(a_facility().nodes(4).per_block(2).build())
    assert place(st, 16, None, TopologyWish.NVLINK) is None  # domains are single nodes
    assert place(st, 8, None, TopologyWish.NVLINK) is not None


def test_counters_stay_consistent_through_allocate_and_release() -> None:
    f = preset("ai-factory-25k")
    st = ClusterState(f)
    rng = np.random.default_rng(1)
    held = []
    for _ in range(300):
        g = int(rng.choice([1, 2, 4, 8, 16, 64, 512, 1024]))
        got = place(st, g, None, TopologyWish.ANY)
        if got is not None:
            st.allocate(got[0], got[1], 1.0)
            held.append(got)
        if held and rng.random() < 0.4:
            n, c = held.pop(int(rng.integers(len(held))))
            st.release(n, c)
    st.check()
    assert st.free_total == f.total_gpus - sum(int(c.sum()) for _, c in held)
