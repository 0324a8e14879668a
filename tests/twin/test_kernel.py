"""The event kernel: ordering, coalesced cycles, causality, determinism."""

from __future__ import annotations

import math
import random

import pytest

from gigafactory.twin.kernel import CausalityError, EventKind, Kernel


def _recorder(log: list[tuple[float, str, int, int]]) -> list:
    def make(kind: EventKind):
        def handler(t: float, a: int, b: int) -> None:
            log.append((t, kind.name, a, b))

        return handler

    return [make(k) for k in EventKind]


def test_events_pop_by_time_then_kind_then_sequence() -> None:
    k = Kernel()
    k.schedule(5.0, EventKind.ARRIVAL, 1)
    k.schedule(5.0, EventKind.COMPLETION, 2)
    k.schedule(1.0, EventKind.CYCLE, 3)
    k.schedule(5.0, EventKind.ARRIVAL, 4)
    k.schedule(5.0, EventKind.NODE_FAILURE, 5)
    log: list[tuple[float, str, int, int]] = []
    assert k.run(_recorder(log)) == 5
    assert [(t, name, a) for t, name, a, _ in log] == [
        (1.0, "CYCLE", 3),
        (5.0, "COMPLETION", 2),
        (5.0, "NODE_FAILURE", 5),
        (5.0, "ARRIVAL", 1),
        (5.0, "ARRIVAL", 4),
    ]
    assert k.now == 5.0
    assert k.counts[EventKind.ARRIVAL] == 2
    assert k.events == 5


def test_cycle_requests_coalesce_per_instant_and_run_last() -> None:
    k = Kernel()
    log: list[tuple[float, str, int, int]] = []
    handlers = _recorder(log)

    def arrival(t: float, a: int, b: int) -> None:
        log.append((t, "ARRIVAL", a, b))
        k.request_cycle()

    handlers[EventKind.ARRIVAL] = arrival
    for i in range(3):
        k.schedule(2.0, EventKind.ARRIVAL, i)
    k.schedule(2.0, EventKind.CHECKPOINT, 9)
    k.schedule(3.0, EventKind.ARRIVAL, 7)
    k.run(handlers)
    names = [(t, n) for t, n, _, _ in log]
    assert names == [
        (2.0, "CHECKPOINT"),
        (2.0, "ARRIVAL"),
        (2.0, "ARRIVAL"),
        (2.0, "ARRIVAL"),
        (2.0, "CYCLE"),
        (3.0, "ARRIVAL"),
        (3.0, "CYCLE"),
    ]
    assert k.cycle_requested(3.0)


def test_scheduling_in_the_past_is_refused() -> None:
    k = Kernel()
    k.schedule(10.0, EventKind.ARRIVAL)
    k.run([lambda t, a, b: None] * len(EventKind))
    with pytest.raises(CausalityError, match=r"ARRIVAL scheduled at t=9.0 before now=10.0"):
        k.schedule(9.0, EventKind.ARRIVAL)


def test_until_leaves_later_events_in_the_heap() -> None:
    k = Kernel()
    for t in (1.0, 2.0, 3.0, 4.0):
        k.schedule(t, EventKind.ARRIVAL)
    log: list[tuple[float, str, int, int]] = []
    assert k.run(_recorder(log), until=2.5) == 2
    assert len(k) == 2
    assert k.peek_time() == 3.0
    assert k.run(_recorder(log)) == 2
    assert k.peek_time() == math.inf


def test_a_handler_can_stop_the_run_and_missing_handlers_fail() -> None:
    k = Kernel()
    k.schedule(1.0, EventKind.ARRIVAL)
    k.schedule(2.0, EventKind.ARRIVAL)

    def stop(t: float, a: int, b: int) -> None:
        k.stopped = True

    handlers: list = [None] * len(EventKind)
    handlers[EventKind.ARRIVAL] = stop
    assert k.run(handlers) == 1
    assert len(k) == 1
    k.schedule(2.0, EventKind.NODE_REPAIR)
    with pytest.raises(LookupError, match="NODE_REPAIR"):
        k.run(handlers)


def test_after_step_and_progress_hooks() -> None:
    k = Kernel()
    for t in range(10):
        k.schedule(float(t), EventKind.ARRIVAL)
    steps: list[float] = []
    ticks: list[tuple[float, int]] = []
    k.run(
        [lambda t, a, b: None] * len(EventKind),
        after_step=lambda: steps.append(k.now),
        progress=lambda now, n: ticks.append((now, n)),
        progress_every=4,
    )
    assert steps == [float(t) for t in range(10)]
    assert ticks == [(3.0, 4), (7.0, 8)]


def test_same_inputs_give_the_same_order() -> None:
    def trace(seed: int) -> list[tuple[float, str, int, int]]:
        rng = random.Random(seed)
        k = Kernel()
        log: list[tuple[float, str, int, int]] = []
        handlers = _recorder(log)

        def arrival(t: float, a: int, b: int) -> None:
            log.append((t, "ARRIVAL", a, b))
            if a < 200:
                k.schedule(t + rng.choice([0.0, 1.0, 2.0]), EventKind.ARRIVAL, a + 1, b)
                k.schedule(t + rng.choice([0.0, 1.0]), EventKind.COMPLETION, a, b)
                k.request_cycle()

        handlers[EventKind.ARRIVAL] = arrival
        k.schedule(0.0, EventKind.ARRIVAL, 0, 0)
        k.run(handlers)
        return log

    first = trace(3)
    assert first == trace(3)
    times = [t for t, *_ in first]
    assert times == sorted(times)
