"""Jobs as the scheduling core sees them: gang size, wishes, priority and progress.

A job is a *gang*: ``gpus`` accelerators that start together or not at all.
Times are seconds on whatever clock the driver uses (simulated or wall); the core
never reads a clock itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gigafactory.core.facility import IntArray


class PriorityClass(IntEnum):
    """Priority classes, ordered: ``urgent`` > ``normal`` > ``preemptible``."""

    PREEMPTIBLE = 0
    NORMAL = 1
    URGENT = 2

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, value: str | int | PriorityClass) -> PriorityClass:
        """Accept ``"urgent"``, ``"normal"``, ``"preemptible"`` (any case) or a rank."""
        if isinstance(value, PriorityClass):
            return value
        if isinstance(value, int):
            return cls(value)
        try:
            return cls[value.strip().upper()]
        except KeyError:
            names = ", ".join(p.label for p in sorted(cls, reverse=True))
            raise ValueError(f"unknown priority class {value!r}; expected one of {names}") from None


class TopologyWish(StrEnum):
    """Where a gang wants its accelerators.

    - ``any``: anywhere within one site (the scheduler still packs it tightly);
    - ``nvlink``: inside one NVLink domain;
    - ``block``: inside one network block (leaf/spine pod);
    - ``fewest-blocks``: as few network blocks as possible (the default for big gangs).
    """

    ANY = "any"
    NVLINK = "nvlink"
    BLOCK = "block"
    FEWEST_BLOCKS = "fewest-blocks"


class JobState(StrEnum):
    """Lifecycle states (DESIGN.md §4). The control plane enforces the transitions."""

    PENDING = "pending"
    HELD = "held"
    STARTING = "starting"
    RUNNING = "running"
    PREEMPTING = "preempting"
    REQUEUED = "requeued"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class JobSpec:
    """What a user asked for. Immutable; progress lives in the scheduler's state.

    ``oracle_runtime`` is the true runtime, known only in simulation; only the
    ``srtf`` oracle baseline reads it. ``runtime_estimate`` is the user's estimate;
    when absent the walltime limit is used for reservations and estimates.
    """

    id: str
    project: str
    gpus: int
    submit_time: float = 0.0
    walltime: float = 24 * 3600.0
    runtime_estimate: float | None = None
    accelerator: str | None = None
    topology: TopologyWish = TopologyWish.ANY
    priority: PriorityClass = PriorityClass.NORMAL
    checkpointable: bool = False
    checkpoint_interval: float | None = None
    min_runtime: float = 0.0
    oracle_runtime: float | None = None
    #: What the scheduler plans with: the estimate, capped by the walltime limit (derived
    #: once: the cycle reads it for every job it looks at).
    expected_runtime: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.id:
            raise ValueError("job id must not be empty")
        if self.gpus < 1:
            raise ValueError(f"job {self.id}: gpus must be at least 1, got {self.gpus}")
        if self.walltime <= 0:
            raise ValueError(f"job {self.id}: walltime must be positive, got {self.walltime}")
        if self.runtime_estimate is not None and self.runtime_estimate <= 0:
            raise ValueError(f"job {self.id}: runtime_estimate must be positive")
        if self.checkpoint_interval is not None and self.checkpoint_interval <= 0:
            raise ValueError(f"job {self.id}: checkpoint_interval must be positive")
        if self.min_runtime < 0:
            raise ValueError(f"job {self.id}: min_runtime must not be negative")
        est = self.walltime if self.runtime_estimate is None else min(self.runtime_estimate, self.walltime)
        object.__setattr__(self, "expected_runtime", est)


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a gang runs: ``(node index, accelerators on that node)`` pairs, sorted by node."""

    nodes: tuple[tuple[int, int], ...] = field(default_factory=tuple)

    @property
    def gpus(self) -> int:
        return sum(c for _, c in self.nodes)

    def __bool__(self) -> bool:
        return bool(self.nodes)


@dataclass(slots=True)
class RunningJob:
    """A job the scheduler has started: its gang's nodes and GPU counts, and its progress."""

    spec: JobSpec
    tenant: int
    nodes: IntArray
    counts: IntArray
    start_time: float
    last_checkpoint: float | None = None
    attained_before: float = 0.0
    preempting: bool = False
    expected_end: float = field(default=math.inf)

    @property
    def placement(self) -> Placement:
        return Placement(tuple(zip(self.nodes.tolist(), self.counts.tolist(), strict=True)))

    def progress_since_checkpoint(self, now: float) -> float:
        """Seconds of work lost if the job stopped now."""
        mark = self.start_time if self.last_checkpoint is None else max(self.last_checkpoint, self.start_time)
        return max(0.0, now - mark)

    def attained(self, now: float) -> float:
        return self.attained_before + self.spec.gpus * max(0.0, now - self.start_time)
