"""Node failures and repairs: a per-node MTBF, calibrated to Llama 3's interruption rate.

Meta reported 419 unexpected interruptions in 54 days of pretraining on 16,384 H100
GPUs (2,048 nodes of 8) for Llama 3 (2024), most of them GPU or HBM faults. Taking
every interruption as one node failure gives a per-node mean time between failures

    MTBF = 54 days × 24 h × 2,048 nodes / 419 ≈ 6,336 h (about 264 days),

about one failure every 3.1 hours on 2,048 nodes and about 2 per hour on the
12,500 nodes of ``gigafactory-100k``.

Each up node fails after an exponential time with that mean (memoryless, so the
whole facility is one Poisson process of rate ``up nodes / MTBF``: the twin draws
the next facility-wide failure and picks a node uniformly; a pick that lands on a
node already down is discarded, which thins the process to exactly the up nodes).
A failed node is repaired after an exponential time with mean ``repair_h``
(default 4 h: an assumption: Meta did not publish repair times; hot spares would
make it shorter, an RMA longer). Jobs on a failed node are interrupted: they lose
the work since their last checkpoint and are requeued with what they had saved.

Failures use their own random stream (seeded from the run's seed), so turning
them on or off never changes the workload.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: Per-node MTBF in hours from Llama 3 (419 interruptions, 54 days, 2,048 nodes).
LLAMA3_NODE_MTBF_H: float = 54 * 24 * 2048 / 419
DEFAULT_REPAIR_H: float = 4.0


@dataclass(frozen=True)
class FailureModel:
    """Failure parameters. ``node_mtbf_h = inf`` turns failures off."""

    node_mtbf_h: float = LLAMA3_NODE_MTBF_H
    repair_h: float = DEFAULT_REPAIR_H
    repair: str = "exponential"  # or "fixed"
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.node_mtbf_h > 0:
            raise ValueError(f"node MTBF must be positive hours, got {self.node_mtbf_h}")
        if not self.repair_h >= 0:
            raise ValueError(f"repair time must be non-negative hours, got {self.repair_h}")
        if self.repair not in ("exponential", "fixed"):
            raise ValueError(f"repair must be 'exponential' or 'fixed', got {self.repair!r}")

    @property
    def enabled(self) -> bool:
        return math.isfinite(self.node_mtbf_h)

    def describe(self) -> str:
        if not self.enabled:
            return "no node failures"
        return (
            f"node failures: exponential per-node MTBF {self.node_mtbf_h:,.0f} h "
            f"(Llama 3: 419 interruptions / 54 days / 2,048 nodes = {LLAMA3_NODE_MTBF_H:,.0f} h); "
            f"repair {self.repair} with mean {self.repair_h:g} h; a failed job loses the work "
            "since its last checkpoint and is requeued"
        )


class FailureProcess:
    """Draws the facility-wide failure times, the failed node and repair times."""

    def __init__(self, model: FailureModel, n_nodes: int) -> None:
        self.model = model
        self.n_nodes = n_nodes
        self._rng = np.random.default_rng([model.seed, 0x6661696C])  # its own stream
        self._mean_gap_s = model.node_mtbf_h * 3600.0 / n_nodes

    def next_time(self, now: float) -> float:
        """When the next failure (of any node, up or down) happens after ``now``."""
        if not self.model.enabled:
            return math.inf
        return now + float(self._rng.exponential(self._mean_gap_s))

    def pick_node(self) -> int:
        return int(self._rng.integers(self.n_nodes))

    def repair_time(self) -> float:
        mean = self.model.repair_h * 3600.0
        if self.model.repair == "fixed" or mean == 0:
            return mean
        return float(self._rng.exponential(mean))
