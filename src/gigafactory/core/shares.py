"""The share tree: partners → programmes → projects, entitlements and decayed usage.

Every tenant node has a *guarantee* (GPUs owed when it has demand), a *borrow limit*
(how far above its guarantee it may go on others' idle capacity; ``None`` = no limit),
a *lend limit* (how much of its idle guarantee others may use; ``None`` = all of it)
and a fair-share *weight*. Jobs belong to projects, the leaves of the tree.

:func:`entitlements` is hierarchical max-min water-filling: at each level, guarantees
are met first (never above demand), then what is left is split by weight, never above
a child's demand or its cap (guarantee + borrow limit).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
INF = math.inf


class TenantKind(StrEnum):
    PARTNER = "partner"
    PROGRAMME = "programme"
    PROJECT = "project"


@dataclass(frozen=True, slots=True)
class TenantSpec:
    """One node of the share tree. ``parent=None`` hangs it under the root."""

    name: str
    kind: TenantKind = TenantKind.PROJECT
    parent: str | None = None
    guarantee: int = 0
    borrow_limit: int | None = None
    lend_limit: int | None = None
    weight: float = 1.0
    tenant_class: str | None = None

    def __post_init__(self) -> None:
        if not self.name or self.name == ROOT:
            raise ValueError(f"tenant name {self.name!r} is not allowed")
        if self.guarantee < 0:
            raise ValueError(f"tenant {self.name}: guarantee must not be negative")
        if self.borrow_limit is not None and self.borrow_limit < 0:
            raise ValueError(f"tenant {self.name}: borrow_limit must not be negative")
        if self.lend_limit is not None and self.lend_limit < 0:
            raise ValueError(f"tenant {self.name}: lend_limit must not be negative")
        if not (self.weight > 0 and math.isfinite(self.weight)):
            raise ValueError(f"tenant {self.name}: weight must be a positive finite number, got {self.weight}")

    @property
    def cap(self) -> float:
        """Most GPUs this tenant may hold: guarantee + borrow limit."""
        return INF if self.borrow_limit is None else float(self.guarantee + self.borrow_limit)


ROOT = "<root>"


class ShareTree:
    """An immutable, validated share tree with index arrays for fast per-cycle maths.

    Index 0 is the synthetic root. ``path[i]`` lists the ancestors of ``i`` from the
    root's child down to ``i`` itself (the root is not included).
    """

    def __init__(self, tenants: Iterable[TenantSpec]) -> None:
        specs = list(tenants)
        names = [t.name for t in specs]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"duplicate tenant names: {', '.join(dup)}")
        by_name = {t.name: t for t in specs}
        for t in specs:
            if t.parent is not None and t.parent not in by_name:
                raise ValueError(f"tenant {t.name}: unknown parent {t.parent!r}")
        # Order: root, then breadth-first by name so indices are deterministic.
        children: dict[str | None, list[str]] = {}
        for t in specs:
            children.setdefault(t.parent, []).append(t.name)
        order: list[str] = []
        frontier = sorted(children.get(None, []))
        while frontier:
            order.extend(frontier)
            frontier = sorted(c for n in frontier for c in children.get(n, []))
        if len(order) != len(specs):
            cyc = sorted(set(names) - set(order))
            raise ValueError(f"the share tree has a cycle through: {', '.join(cyc)}")
        self.specs: tuple[TenantSpec, ...] = tuple(by_name[n] for n in order)
        self.names: tuple[str, ...] = (ROOT, *order)
        self.index: dict[str, int] = {n: i for i, n in enumerate(self.names)}
        n = len(self.names)
        self.parent = np.full(n, -1, dtype=np.int64)
        self.children: list[list[int]] = [[] for _ in range(n)]
        for i, t in enumerate(self.specs, start=1):
            p = 0 if t.parent is None else self.index[t.parent]
            self.parent[i] = p
            self.children[p].append(i)
        self.guarantee = np.array([0.0] + [float(t.guarantee) for t in self.specs])
        self.cap = np.array([INF] + [t.cap for t in self.specs])
        self.lend = np.array(
            [INF] + [INF if t.lend_limit is None else float(t.lend_limit) for t in self.specs]
        )
        self.weight = np.array([1.0] + [t.weight for t in self.specs])
        self.path: list[tuple[int, ...]] = [()] * n
        for i in range(1, n):
            p = int(self.parent[i])
            self.path[i] = (*self.path[p], i)
        self.is_leaf = np.array([not c for c in self.children])
        # the same columns as plain lists, for per-cycle arithmetic on small trees
        self.leaf_l: list[bool] = [not c for c in self.children]
        self.parent_l: list[int] = self.parent.tolist()
        self.guarantee_l: list[float] = self.guarantee.tolist()
        self.cap_l: list[float] = self.cap.tolist()
        self.lend_l: list[float] = self.lend.tolist()
        self.weight_l: list[float] = self.weight.tolist()
        # index lists for entitlements: nodes rolled up into a parent other than the root
        # (last first), nodes with a cap or children (last first), nodes with children
        self.rolled = [i for i in range(n - 1, 0, -1) if self.parent_l[i] != 0]
        self.bounded = [i for i in range(n - 1, 0, -1) if self.cap_l[i] != INF or self.children[i]]
        self.parents = [i for i in range(n) if self.children[i]]
        #: per parent, its children's weights; parents none of whose children has a
        #: guarantee (their entitlements are a plain water-fill of demand)
        self.kid_weights: dict[int, list[float]] = {p: [self.weight_l[c] for c in self.children[p]]
                                                    for p in self.parents}
        self.unguaranteed = frozenset(p for p in self.parents
                                      if not any(self.guarantee_l[c] > 0 for c in self.children[p]))
        #: some tenant has a guarantee (else nothing is ever owed, so nothing reclaimed)
        self.guaranteed = bool((self.guarantee > 0).any())
        #: tenants with a finite lend limit (the only ones that keep capacity back)
        self.lend_limited: list[int] = [i for i in range(1, n) if np.isfinite(self.lend[i])]
        #: some tenant has a borrow or a lend limit (else no job ever waits for a limit)
        self.limited = bool(np.isfinite(self.cap).any()) or bool(self.lend_limited)
        for i in range(1, n):
            kids = self.children[i]
            if kids and sum(self.guarantee[k] for k in kids) > self.guarantee[i] + 1e-9:
                raise ValueError(
                    f"tenant {self.names[i]}: children's guarantees "
                    f"({int(sum(self.guarantee[k] for k in kids))}) exceed its own "
                    f"({int(self.guarantee[i])})"
                )
        # Normalised fair-share of each node: product of weight fractions along its path.
        self.share = np.ones(n)
        for i in range(1, n):
            sib = self.children[int(self.parent[i])]
            self.share[i] = self.share[int(self.parent[i])] * self.weight[i] / sum(
                self.weight[s] for s in sib
            )

    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, name: object) -> bool:
        return name in self.index and name != ROOT

    def spec(self, name: str) -> TenantSpec:
        return self.specs[self.index[name] - 1]

    def project(self, name: str) -> int:
        """Index of a project (a leaf); a clear error for unknown or non-leaf names."""
        i = self.index.get(name)
        if i is None or i == 0:
            raise ValueError(f"unknown project {name!r}")
        if not self.is_leaf[i]:
            raise ValueError(f"tenant {name!r} has children; jobs must belong to a project")
        return i

    @property
    def projects(self) -> list[str]:
        return [self.names[i] for i in range(1, len(self)) if self.is_leaf[i]]

    @property
    def partners(self) -> list[str]:
        return [self.names[i] for i in self.children[0]]

    def rollup(self, leaf_values: FloatArray) -> FloatArray:
        """Sum per-node values up the tree (children are always after their parent)."""
        out = np.array(leaf_values, dtype=np.float64, copy=True)
        for i in range(len(self) - 1, 0, -1):
            out[self.parent[i]] += out[i]
        return out


def _water_fill(amount: float, lo: Sequence[float], hi: Sequence[float], w: Sequence[float]) -> list[float]:
    """Give ``amount`` to children: each starts at ``lo`` and rises by weight, up to ``hi``.

    Max-min fair by weight: the child with the smallest ``(hi - lo) / w`` saturates first
    (ties by index: the sort is stable).
    """
    alloc = list(lo)
    left = amount - sum(lo)
    room = [(h - low) / wi for low, h, wi in zip(lo, hi, w, strict=True)]
    active = sorted([i for i, (low, h) in enumerate(zip(lo, hi, strict=True)) if h > low + 1e-12],
                    key=room.__getitem__)
    wsum = sum([w[i] for i in active])
    for k, i in enumerate(active):
        if left <= 1e-12 or wsum <= 0:
            break
        level = left / wsum  # per unit of weight
        if room[i] <= level:
            give = hi[i] - lo[i]
        else:
            # No one else saturates: share what is left by weight among the rest.
            for j in active[k:]:
                alloc[j] += left * w[j] / wsum
            return alloc
        alloc[i] += give
        left -= give
        wsum -= w[i]
    return alloc


def entitlements(tree: ShareTree, capacity: float, demand: FloatArray) -> FloatArray:
    """Hierarchical max-min entitlement of every node, given per-node demand in GPUs.

    ``demand`` is indexed like the tree; only leaf entries are read (internal demand is
    rolled up). The root receives ``min(capacity, demand)``. At each node:

    1. each child gets ``min(demand, guarantee)`` (scaled down if guarantees exceed
       what the parent holds);
    2. idle guarantee above a child's lend limit is kept back (not lent);
    3. the rest is water-filled by weight, never above demand or cap.

    Plain Python floats throughout: share trees are small, and per-element NumPy
    calls would cost more than the arithmetic (the results are the same IEEE sums).
    """
    return np.array(entitlements_of(tree, capacity, np.asarray(demand, dtype=np.float64).tolist()))


def entitlements_of(tree: ShareTree, capacity: float, demand: list[float]) -> list[float]:
    """:func:`entitlements` on plain lists (demand indexed like the tree)."""
    n = len(tree)
    leaf, parent, children, cap = tree.leaf_l, tree.parent_l, tree.children, tree.cap_l
    want = [d if lf else 0.0 for d, lf in zip(demand, leaf, strict=True)]
    for i in tree.rolled:  # roll up (children are always after their parent; the root is recomputed)
        want[parent[i]] += want[i]
    # A node can never use more than its cap, and a parent no more than its children can.
    for i in tree.bounded:  # nodes with a cap or children, last first
        want[i] = min(want[i], cap[i])
        if not leaf[i]:
            want[i] = min(want[i], sum([want[c] for c in children[i]]))
    want[0] = sum([want[c] for c in children[0]])
    ent = [0.0] * n
    ent[0] = min(float(capacity), want[0])
    guarantee, lend = tree.guarantee_l, tree.lend_l
    for p in tree.parents:  # parents precede children
        kids = children[p]
        amount = ent[p]
        d = [want[c] for c in kids]
        if p in tree.unguaranteed:  # no child has a guarantee: every base is 0, none is kept
            alloc = _water_fill(amount, [0.0] * len(kids), d, tree.kid_weights[p])
            for c, a in zip(kids, alloc, strict=True):
                ent[c] = a
            continue
        g = [guarantee[c] for c in kids]
        base = [min(gi, di) for gi, di in zip(g, d, strict=True)]
        if sum(base) > amount:
            total = sum(base)
            for c, b in zip(kids, base, strict=True):
                ent[c] = amount * b / total if total else 0.0
            continue
        kept = sum(max(0.0, gi - di - lend[c]) for c, gi, di in zip(kids, g, d, strict=True))
        budget = max(sum(base), amount - kept)
        alloc = _water_fill(budget, base, d, tree.kid_weights[p])
        for c, a in zip(kids, alloc, strict=True):
            ent[c] = a
    return ent


def decay(value: float, elapsed: float, half_life: float) -> float:
    """Exponential decay of usage over ``elapsed`` seconds with the given half-life."""
    if half_life <= 0 or math.isinf(half_life):
        return value
    return float(value * 0.5 ** (elapsed / half_life))


def fair_share_factor(usage_share: FloatArray, share: FloatArray) -> FloatArray:
    """Slurm-style factor in (0, 1]: ``2 ** -(usage share / normalised share)``.

    1.0 for a tenant that used nothing recently, 0.5 for one that used exactly its
    share, falling towards 0 for heavy users. Higher means scheduled sooner.
    """
    if np.count_nonzero(share) == share.shape[0]:  # the usual case: every share is positive
        ratio = usage_share / share
    else:
        ratio = np.divide(usage_share, share, out=np.full(share.shape, np.inf), where=share > 0)
    out: FloatArray = np.power(2.0, -ratio)
    return out
