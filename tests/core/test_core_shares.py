"""Share tree: validation, hierarchical max-min entitlements, decay and fair share."""

from __future__ import annotations

import math

import numpy as np
import pytest
from builders import a_tree
from hypothesis import given, settings
from hypothesis import strategies as st

from gigafactory.core.shares import (
    ShareTree,
    TenantSpec,
    _water_fill,
    decay,
    entitlements,
    fair_share_factor,
)


def ent(tree: ShareTree, capacity: float, **demand: float) -> dict[str, float]:
    d = np.zeros(len(tree))
    for name, v in demand.items():
        d[tree.index[name]] = v
    e = entitlements(tree, capacity, d)
    return {n: round(float(e[i]), 3) for i, n in enumerate(tree.names) if i}


TWO = a_tree().partner("eu", 60).partner("host", 30).project("a", "eu", 60).project("b", "host", 30)


@pytest.mark.parametrize(
    ("demand", "expected"),
    [
        # Guarantees first, then the remainder split by weight (equal weights here).
        ({"a": 100, "b": 100}, {"a": 65, "b": 35}),
        # Never above demand; what one does not want goes to the other.
        ({"a": 10, "b": 100}, {"a": 10, "b": 90}),
        ({"a": 0, "b": 0}, {"a": 0, "b": 0}),
        # Below guarantees everyone gets their demand.
        ({"a": 20, "b": 20}, {"a": 20, "b": 20}),
    ],
)
def test_guarantees_first_then_weight(demand: dict[str, float], expected: dict[str, float]) -> None:
    got = ent(TWO.build(), 100, **demand)
    assert {k: got[k] for k in expected} == expected


def test_borrow_limit_caps_entitlement() -> None:
    t = a_tree().partner("eu", 60).partner("host", 30, borrow_limit=5).project("a", "eu").project("b", "host").build()
    got = ent(t, 100, a=10, b=100)
    assert got["host"] == 35 and got["b"] == 35
    assert got["eu"] == 10


def test_lend_limit_keeps_idle_guarantee_back() -> None:
    t = a_tree().partner("eu", 60, lend_limit=20).partner("host", 30).project("a", "eu").project("b", "host").build()
    got = ent(t, 100, a=0, b=100)
    # eu lends at most 20 of its 60 idle GPUs: host gets 100 - 40.
    assert got["b"] == 60


def test_weights_split_the_remainder() -> None:
    t = a_tree().partner("x", 0, weight=3).partner("y", 0, weight=1).project("a", "x").project("b", "y").build()
    got = ent(t, 100, a=1000, b=1000)
    assert (got["a"], got["b"]) == (75, 25)


def test_hierarchy_splits_within_a_partner() -> None:
    t = (a_tree().partner("eu", 80).programme("sme", "eu", 40).project("p1", "sme", 20).project("p2", "sme", 20)
         .project("p3", "eu", 40).partner("priv", 20).project("q", "priv", 20).build())
    got = ent(t, 100, p1=100, p2=5, p3=0, q=100)
    assert got["p2"] == 5
    assert got["p1"] + got["p2"] == got["sme"]
    assert got["sme"] + got["p3"] == got["eu"]
    assert math.isclose(got["eu"] + got["priv"], 100)
    assert got["priv"] >= 20 and got["sme"] >= 40


def test_capacity_shortfall_scales_guarantees() -> None:
    got = ent(TWO.build(), 45, a=100, b=100)  # half the GPUs are down
    assert (got["a"], got["b"]) == (30, 15)


@pytest.mark.parametrize(
    ("tenants", "message"),
    [
        ([TenantSpec("a", parent="zz")], "tenant a: unknown parent 'zz'"),
        ([TenantSpec("a"), TenantSpec("a")], "duplicate tenant names: a"),
        ([TenantSpec("a", parent="b"), TenantSpec("b", parent="a")], "cycle through: a, b"),
        ([TenantSpec("p", guarantee=1), TenantSpec("c", parent="p", guarantee=2)], "children's guarantees"),
    ],
)
def test_tree_validation(tenants: list[TenantSpec], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ShareTree(tenants)


def test_spec_validation() -> None:
    with pytest.raises(ValueError, match="guarantee must not be negative"):
        TenantSpec("x", guarantee=-1)
    for bad in (0.0, -1.0, float("inf"), float("nan")):  # an infinite weight made NaN shares
        with pytest.raises(ValueError, match="weight must be a positive finite number"):
            TenantSpec("x", weight=bad)


def test_jobs_only_on_projects() -> None:
    t = TWO.build()
    with pytest.raises(ValueError, match="tenant 'eu' has children"):
        t.project("eu")
    with pytest.raises(ValueError, match="unknown project 'zz'"):
        t.project("zz")


def test_decay_halves_per_half_life() -> None:
    assert decay(100.0, 3600, 3600) == 50.0
    assert decay(100.0, 7200, 3600) == 25.0
    assert decay(100.0, 10, math.inf) == 100.0


def test_fair_share_factor() -> None:
    f = fair_share_factor(np.array([0.0, 0.25, 0.5]), np.array([0.25, 0.25, 0.25]))
    assert f.tolist() == [1.0, 0.5, 0.25]


@settings(max_examples=300, deadline=None)
@given(
    st.floats(0, 1e6, allow_nan=False),
    st.lists(st.one_of(st.integers(0, 5000).map(float), st.floats(0, 5000, allow_nan=False)), max_size=20),
)
def test_an_equal_weight_fill_never_gives_more_than_the_amount_or_the_demand(
        amount: float, demand: list[float]) -> None:
    alloc = _water_fill(amount, [0.0] * len(demand), demand, [1.0] * len(demand))
    assert sum(alloc) <= max(amount, 0.0) * (1 + 1e-9) + 1e-9 and all(
        0.0 <= a <= d * (1 + 1e-12) + 1e-12 for a, d in zip(alloc, demand, strict=True))


def test_a_flat_equal_weight_tree_fills_evenly_up_to_demand() -> None:
    tree = a_tree().partner("a").partner("b").partner("c").build()
    ent = entitlements(tree, 10.0, np.array([0.0, 2.0, 6.0, 9.0]))
    assert ent.tolist() == [10.0, 2.0, 4.0, 4.0]  # a saturates at 2; b and c split the rest
