"""The twin's run configuration, its result records, and its user-facing error."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from gigafactory.core.facility import Facility
from gigafactory.core.scheduler import SchedulerConfig
from gigafactory.core.shares import ShareTree
from gigafactory.twin.failures import FailureModel
from gigafactory.twin.workload import Workload


class SimulationError(ValueError):
    """The simulation cannot run on this input; the message is one line."""


@dataclass(frozen=True)
class SimConfig:
    """How the twin runs. ``cycle_interval`` 0 with ``cycle_on_events`` is event mode."""

    policy: str = "gigafactory"
    # the twin reads no pending job's estimate or reason: the core may skip them
    scheduler: SchedulerConfig = field(default_factory=lambda: SchedulerConfig(explain=False))
    cycle_on_events: bool = True
    cycle_interval: float = 0.0
    failures: FailureModel | None = None
    start_overhead: float = 0.0
    preempt_checkpoint: bool = True
    until: float = math.inf
    validate: bool = True
    skip_invalid: bool = False
    outages: tuple[tuple[int, float, float], ...] = ()  # scripted (node, down at, up at)

    def __post_init__(self) -> None:
        if self.cycle_interval < 0 or not math.isfinite(self.cycle_interval):
            raise ValueError(f"cycle interval must be a finite number >= 0, got {self.cycle_interval}")
        if not self.cycle_on_events and self.cycle_interval <= 0:
            raise ValueError("the cycle must run on events, every N seconds, or both")
        if self.start_overhead < 0:
            raise ValueError(f"start overhead must be >= 0, got {self.start_overhead}")
        for node, down, up in self.outages:
            if not 0 <= down <= up < math.inf:
                raise ValueError(f"outage of node {node}: expected 0 <= down <= up, got {down}, {up}")

    @property
    def cycle_text(self) -> str:
        parts = (["on events (coalesced per instant)"] if self.cycle_on_events else []) + (
            [f"every {self.cycle_interval:g} s"] if self.cycle_interval > 0 else []
        )
        return " and ".join(parts)


def parse_cycle(text: str) -> tuple[bool, float]:
    """``events``, ``30`` (seconds) or ``events+30`` → (on events, interval)."""
    on_events, interval = False, 0.0
    for part in text.lower().replace(" ", "").split("+"):
        if part == "events":
            on_events = True
            continue
        try:
            interval = float(part.removesuffix("s"))
        except ValueError:
            raise ValueError(f"cycle must be 'events', a number of seconds or 'events+N', got {text!r}") from None
        if not interval > 0 or not math.isfinite(interval):
            raise ValueError(f"cycle interval must be positive seconds, got {text!r}")
    return on_events, interval


@dataclass
class SimResult:
    """Raw records of one run; :mod:`gigafactory.twin.metrics` turns them into figures."""

    facility: Facility
    tree: ShareTree
    workload: Workload
    config: SimConfig
    jobs: pd.DataFrame
    attempts: pd.DataFrame
    outages: pd.DataFrame
    end_time: float
    events: dict[str, int]
    wall_s: float
    stalled: str | None
    assumptions: list[str]
    cycles: int = 0  # scheduling cycles the core actually ran
