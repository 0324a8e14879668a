"""A small deterministic discrete-event kernel for the digital twin.

Events live in one binary heap (:mod:`heapq`) as tuples
``(time, kind, sequence, a, b)``:

- ``time`` is simulated seconds;
- ``kind`` (an :class:`EventKind`) doubles as the *priority* among events at the
  same instant: completions free GPUs before failures, failures before arrivals,
  and the scheduling cycle runs last, once all of an instant's changes are known;
- ``sequence`` is a per-run counter, so equal ``(time, kind)`` pairs pop in the
  order they were scheduled and the two payload integers ``a`` and ``b`` are
  never compared. Two runs with the same inputs pop the same events in the same
  order: the kernel holds no global state and reads no clock.

The kernel knows nothing about jobs or the scheduler: handlers (one per kind)
receive ``(time, a, b)``. Stale events (for example the completion of a job that
was since preempted) are not removed from the heap; handlers recognise them by an
attempt number carried in ``b`` and ignore them (lazy deletion keeps every
operation O(log n)).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Sequence
from enum import IntEnum

Handler = Callable[[float, int, int], None]


class EventKind(IntEnum):
    """Event kinds; the value is the priority among events at the same instant."""

    COMPLETION = 0  # a job finished its work
    STOP = 1  # a preempted job's grace period is over: it stops and is requeued
    NODE_FAILURE = 2
    NODE_REPAIR = 3
    CHECKPOINT = 4  # a running job wrote a checkpoint
    START = 5  # a started job's launch overhead is over: useful work begins
    ARRIVAL = 6  # a job is submitted
    CYCLE = 7  # a scheduling cycle (runs after every other event of the instant)


N_KINDS = len(EventKind)


class CausalityError(ValueError):
    """An event was scheduled before the current simulated time."""


class Kernel:
    """The event heap, the simulated clock and a run loop.

    ``schedule`` adds an event; ``run`` pops events in ``(time, kind, sequence)``
    order and calls ``handlers[kind](time, a, b)`` until the heap is empty, the
    next event is after ``until``, or a handler sets :attr:`stopped`.

    ``request_cycle`` coalesces scheduling cycles: however many events at one
    instant ask for a cycle, exactly one CYCLE event runs at that instant, after
    all of them.
    """

    __slots__ = ("_cycle_at", "_heap", "_seq", "counts", "now", "stopped")

    def __init__(self, start: float = 0.0) -> None:
        self._heap: list[tuple[float, int, int, int, int]] = []
        self._seq = 0
        self._cycle_at = -math.inf
        self.now = float(start)
        self.stopped = False
        self.counts = [0] * N_KINDS

    def __len__(self) -> int:
        return len(self._heap)

    @property
    def events(self) -> int:
        """Events popped so far, stale ones included."""
        return sum(self.counts)

    def schedule(self, time: float, kind: int, a: int = 0, b: int = 0) -> None:
        """Add an event at ``time`` (never before :attr:`now`)."""
        if time < self.now:
            raise CausalityError(
                f"event {EventKind(kind).name} scheduled at t={time} before now={self.now}"
            )
        self._seq += 1
        heapq.heappush(self._heap, (time, kind, self._seq, a, b))

    def request_cycle(self, time: float | None = None) -> None:
        """Ask for one scheduling cycle at ``time`` (default: now), coalesced per instant."""
        t = self.now if time is None else time
        if t != self._cycle_at:
            self._cycle_at = t
            self.schedule(t, EventKind.CYCLE)

    def cycle_requested(self, time: float) -> bool:
        """True when a coalesced cycle is already scheduled at ``time``."""
        return self._cycle_at == time

    def peek_time(self) -> float:
        """Time of the next event, ``inf`` when the heap is empty."""
        return self._heap[0][0] if self._heap else math.inf

    def pop(self) -> tuple[float, int, int, int]:
        """Remove the next event, advance the clock, return ``(time, kind, a, b)``."""
        time, kind, _seq, a, b = heapq.heappop(self._heap)
        self.now = time
        self.counts[kind] += 1
        return time, kind, a, b

    def run(
        self,
        handlers: Sequence[Handler | None],
        until: float = math.inf,
        after_step: Callable[[], None] | None = None,
        progress: Callable[[float, int], None] | None = None,
        progress_every: int = 20_000,
    ) -> int:
        """Process events in order; return how many were handled.

        ``handlers`` is indexed by kind; a ``None`` entry makes that kind an error.
        ``after_step`` (validation) runs after every event. ``progress`` receives
        ``(now, events handled)`` every ``progress_every`` events.
        """
        heap = self._heap
        counts = self.counts
        pop = heapq.heappop
        handled = 0
        next_progress = progress_every
        self.stopped = False
        while heap and not self.stopped:
            if heap[0][0] > until:
                break
            time, kind, _seq, a, b = pop(heap)
            self.now = time
            counts[kind] += 1
            handler = handlers[kind]
            if handler is None:
                raise LookupError(f"no handler for event kind {EventKind(kind).name}")
            handler(time, a, b)
            handled += 1
            if after_step is not None:
                after_step()
            if progress is not None and handled >= next_progress:
                next_progress += progress_every
                progress(time, handled)
        return handled
