"""Run the scheduler loop in a background thread of the API process.

Every replica starts a runner; only the one holding the leader lock builds an
executor and cycles, the others wait and retry. Losing the lock (PostgreSQL connection
gone) stops cycling at once; the executor is closed, never its jobs.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from gigafactory.executors import get_executor
from gigafactory.service.deps import ServiceContext
from gigafactory.service.scheduler.leader import LeaderLock, leader_lock
from gigafactory.service.scheduler.loop import SchedulerLoop

log = logging.getLogger("gigafactory.scheduler")


def make_executor(ctx: ServiceContext) -> Any:
    """The executor named in the settings (or the one the context was given)."""
    if ctx.executor is not None:
        return ctx.executor
    settings = ctx.settings
    kwargs: dict[str, Any] = {}
    if settings.executor == "local":
        kwargs = {"state_dir": settings.state_dir.absolute() / "executor",
                  "gpus_per_node": int(ctx.facility.node_gpus.max())}
    elif settings.executor == "twin":
        kwargs = {"state_dir": settings.state_dir.absolute() / "executor-twin",
                  "speed": settings.twin_speed}
    return get_executor(settings.executor, **kwargs)


class LoopRunner:
    def __init__(self, ctx: ServiceContext, lock: LeaderLock | None = None) -> None:
        self.ctx = ctx
        self.lock = lock or leader_lock(ctx.engine)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="gigafactory-scheduler", daemon=True)
        self.loop: SchedulerLoop | None = None
        self.hooks: list[Any] = list(ctx.extras.get("loop_hooks", []))  # after each cycle

    def start(self) -> LoopRunner:
        self.thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self.stopping.set()
        self.thread.join(timeout)

    def health(self) -> dict[str, Any]:
        if self.loop is None:
            return {"leader": False}
        return self.loop.health()

    def step(self) -> None:
        """One iteration: become leader if possible, then cycle once."""
        if self.loop is not None and not self.lock.still_held():
            log.error("lost the scheduler leader lock; standing by")
            self._drop()
        if self.loop is None:
            if not self.lock.try_acquire():
                return
            log.info("became the scheduler leader")
            self.loop = SchedulerLoop(self.ctx, make_executor(self.ctx))
        try:
            self.loop.run_once()
            self.loop.last_error = None
        except Exception as exc:  # one bad cycle must not kill the loop
            log.exception("scheduler cycle failed")
            self.loop.last_error = f"{type(exc).__name__}: {exc}"[:500]
        for hook in self.hooks:
            try:
                hook()
            except Exception:
                log.exception("scheduler hook failed")

    def _drop(self) -> None:
        loop, self.loop = self.loop, None
        if loop is not None and loop.executor is not self.ctx.executor:
            close = getattr(loop.executor, "close", None)
            if close is not None:
                close()

    def _run(self) -> None:
        while not self.stopping.is_set():
            self.step()
            self.stopping.wait(self.ctx.settings.cycle_interval)
        self._drop()
        self.lock.release()


def start_background(ctx: ServiceContext) -> LoopRunner:
    runner = LoopRunner(ctx)
    ctx.loop = runner
    return runner.start()
