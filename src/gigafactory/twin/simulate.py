"""The twin's driver: replays a workload through the unchanged scheduling core.

The driver owns simulated time and the jobs' progress; the core
(:class:`gigafactory.core.scheduler.Scheduler`) owns every decision. Each event
handler tells the core what happened and acts on its decisions; no policy logic
lives here.

Job model (every item is also listed in the report's assumptions):

- a job needs ``duration`` seconds of work on its gang; it holds its GPUs from the
  cycle that starts it; useful work begins after ``start_overhead`` seconds;
- a checkpointable job writes a checkpoint every ``checkpoint_interval`` seconds
  of work in each attempt, at no cost;
- a preempted job gets SIGTERM and stops after the core's preemption grace; with
  ``preempt_checkpoint`` a checkpointable job saves its progress at SIGTERM (the
  DESIGN.md §4 protocol), otherwise it keeps only its last checkpoint. The grace
  period is overhead, not useful work;
- a job on a failed node stops at once and keeps only its last checkpoint;
- an interrupted job is resubmitted at once with the same spec and its saved
  progress as attained service (GPU-seconds).

Per-job and per-attempt records are kept in preallocated typed arrays
(:mod:`array`) and turned into pandas tables at the end; the per-event work is a
few dictionary and array operations plus the core's own.
"""

from __future__ import annotations

import math
import time
from array import array
from collections.abc import Callable, Sequence

from gigafactory.core.decisions import PreemptJob, StartJob
from gigafactory.core.facility import Facility
from gigafactory.core.scheduler import InvariantError, Scheduler
from gigafactory.core.shares import TenantSpec
from gigafactory.twin.config import SimConfig, SimResult, SimulationError, parse_cycle
from gigafactory.twin.failures import FailureProcess
from gigafactory.twin.kernel import EventKind, Handler, Kernel
from gigafactory.twin.prepare import check_jobs, resolve_tree
from gigafactory.twin.records import (
    COMPLETED,
    DONE,
    FAILED,
    PENDING,
    PREEMPTED,
    RUNNING,
    STOPPING,
    UNFINISHED,
    tables,
)
from gigafactory.twin.workload import Workload

__all__ = ["SimConfig", "SimResult", "Simulation", "SimulationError", "parse_cycle", "simulate"]

ProgressFn = Callable[[float, int], None]


class Simulation:
    """One run. Build it, then call :meth:`run` once."""

    def __init__(
        self,
        facility: Facility,
        workload: Workload,
        config: SimConfig | None = None,
        tree: Sequence[TenantSpec] | None = None,
        tree_name: str = "the share tree",
    ) -> None:
        self.config = cfg = config or SimConfig()
        self.facility = facility
        self.tree = resolve_tree(workload, tree, tree_name)
        self.w = w = check_jobs(workload, facility, self.tree, cfg.skip_invalid)
        from gigafactory.twin.validate import resolve_policy

        try:
            self.sched = Scheduler(facility, self.tree, policy=resolve_policy(cfg.policy), config=cfg.scheduler)
        except ValueError as exc:
            raise SimulationError(str(exc)) from None
        self.kernel = Kernel()
        n = len(w)
        self.n = n
        self._dur = w.duration.tolist()
        self._gpus = w.gpus.tolist()
        self._ckpt = w.checkpoint_interval.tolist()
        self._submit = w.submit.tolist()
        nan = [math.nan] * n
        self.state = bytearray(n)
        self.first_start = array("d", nan)
        self.end = array("d", nan)
        self.queued_since = array("d", nan)
        self.queued = array("d", bytes(8 * n))
        self.progress = array("d", bytes(8 * n))
        self.hold_start = array("d", nan)
        self.work_start = array("d", nan)
        self.ckpt_mark = array("d", nan)
        self.sigterm = array("d", nan)
        self.attempt = array("q", bytes(8 * n))
        self.n_preempt = array("q", bytes(8 * n))
        self.n_fail = array("q", bytes(8 * n))
        self.watts = array("d", bytes(8 * n))
        # attempt records
        self.a_job = array("q")
        self.a_queued = array("d")
        self.a_start = array("d")
        self.a_end = array("d")
        self.a_useful = array("d")
        self.a_lost = array("d")
        self.a_overhead = array("d")
        self.a_reason = array("b")
        self.o_node = array("q")
        self.o_down = array("d")
        self.o_up = array("d")
        self._outage_row: dict[int, int] = {}
        self._live: dict[str, int] = {}
        self._specs: dict[int, object] = {}
        self._watts_node = facility.watts_per_gpu().tolist()
        self._node_gpus = facility.node_gpus.tolist()
        self.node_up = [True] * facility.n_nodes
        self.up_gpus = facility.total_gpus
        self.busy = 0
        self.pending = 0
        self.unfinished = n
        self.next_arrival = 0
        self.last_cycle = -math.inf
        self.cycles = 0
        self.dirty = True  # something changed since the last cycle (interval mode skips otherwise)
        self.stalled: str | None = None
        self.failure = (
            FailureProcess(cfg.failures, facility.n_nodes)
            if cfg.failures is not None and cfg.failures.enabled else None
        )
        self._grace = cfg.scheduler.preemption_grace
        # validation bookkeeping: GPU-seconds conservation
        self._v_t = 0.0
        self._v_busy = 0
        self._v_integral = 0.0
        self._v_closed = 0.0

    # ------------------------------------------------------------------ run
    def run(self, progress: ProgressFn | None = None, progress_every: int = 20_000) -> SimResult:
        k = self.kernel
        t0 = time.perf_counter()
        if self.n:
            k.schedule(self._submit[0], EventKind.ARRIVAL, 0)
            if self.config.cycle_interval > 0:
                first = math.ceil(self._submit[0] / self.config.cycle_interval) * self.config.cycle_interval
                k.schedule(first, EventKind.CYCLE, 1)
            if self.failure is not None:
                k.schedule(self.failure.next_time(self._submit[0]), EventKind.NODE_FAILURE)
            for i, (node, down, _up) in enumerate(self.config.outages):
                if not 0 <= node < self.facility.n_nodes:
                    raise SimulationError(f"outage: node {node} does not exist (0..{self.facility.n_nodes - 1})")
                k.schedule(down, EventKind.NODE_FAILURE, i + 1)
        handlers: list[Handler | None] = [None] * len(EventKind)
        handlers[EventKind.COMPLETION] = self._completion
        handlers[EventKind.STOP] = self._stop
        handlers[EventKind.NODE_FAILURE] = self._node_failure
        handlers[EventKind.NODE_REPAIR] = self._node_repair
        handlers[EventKind.CHECKPOINT] = self._checkpoint
        handlers[EventKind.START] = self._begin_event
        handlers[EventKind.ARRIVAL] = self._arrival
        handlers[EventKind.CYCLE] = self._cycle
        try:
            k.run(
                handlers,
                until=self.config.until,
                after_step=self._validate if self.config.validate else None,
                progress=progress,
                progress_every=progress_every,
            )
        except InvariantError as exc:
            raise InvariantError(f"t={k.now:.3f}: {exc}") from None
        end = k.now if self.unfinished == 0 or self.stalled or not len(k) else min(self.config.until, k.peek_time())
        end = max(end, k.now)
        if self.config.validate:
            self._validate_at(end)
        return self._result(end, time.perf_counter() - t0)

    # ------------------------------------------------------------- handlers
    def _arrival(self, t: float, j: int, _b: int) -> None:
        spec = self.w.job_spec(j)
        self._specs[j] = spec
        self._live[spec.id] = j
        self._enqueue(j, t)
        self.dirty = True
        nxt = j + 1
        self.next_arrival = nxt
        if nxt < self.n:
            self.kernel.schedule(self._submit[nxt], EventKind.ARRIVAL, nxt)
        if self.config.cycle_on_events:
            self.kernel.request_cycle(t)

    def _enqueue(self, j: int, t: float) -> None:
        spec = self._specs[j]
        try:
            self.sched.submit(spec, attained_service=self._gpus[j] * self.progress[j], now=t)  # type: ignore[arg-type]
        except ValueError as exc:
            raise SimulationError(f"{self.w.name}: {exc}") from None
        self.state[j] = PENDING
        self.queued_since[j] = t
        self.pending += 1

    def _cycle(self, t: float, tick: int, _b: int) -> None:
        if tick:
            if self.unfinished:
                self.kernel.schedule(t + self.config.cycle_interval, EventKind.CYCLE, 1)
            if not self.dirty:
                return  # nothing happened since a cycle that decided nothing
        if not self.sched.pending:
            self.dirty = False
            return
        if t == self.last_cycle:
            return
        self.last_cycle = t
        self.cycles += 1
        d = self.sched.cycle(t)
        self.dirty = bool(d.starts or d.preemptions)
        for s in d.starts:
            self._start(t, s)
        for p in d.preemptions:
            self._preempt(t, p)
        if (
            not d.starts
            and self.busy == 0
            and self.next_arrival >= self.n
            and self.up_gpus == self.facility.total_gpus
        ):
            self.stalled = (
                f"{self.pending} pending job(s) can never start (nothing runs, no job will "
                f"arrive, every node is up); first: {next(iter(self.sched.pending))}"
            )
            self.kernel.stopped = True

    def _start(self, t: float, s: StartJob) -> None:
        j = self._live[s.job_id]
        self.state[j] = RUNNING
        self.pending -= 1
        self.hold_start[j] = t
        self.queued[j] += t - self.queued_since[j]
        if math.isnan(self.first_start[j]):
            self.first_start[j] = t
        self.attempt[j] += 1
        self.work_start[j] = math.inf
        self.sigterm[j] = math.nan
        self.watts[j] = self._watts_node[s.placement.nodes[0][0]]
        self.busy += self._gpus[j]
        if self.config.start_overhead > 0:
            self.kernel.schedule(t + self.config.start_overhead, EventKind.START, j, self.attempt[j])
        else:
            self._begin(t, j)

    def _begin_event(self, t: float, j: int, attempt: int) -> None:
        if self.attempt[j] == attempt and self.state[j] == RUNNING:
            self._begin(t, j)

    def _begin(self, t: float, j: int) -> None:
        self.work_start[j] = t
        self.ckpt_mark[j] = t
        att = self.attempt[j]
        done_at = t + (self._dur[j] - self.progress[j])
        self.kernel.schedule(done_at, EventKind.COMPLETION, j, att)
        ci = self._ckpt[j]
        if ci == ci and t + ci < done_at:  # not NaN
            self.kernel.schedule(t + ci, EventKind.CHECKPOINT, j, att)

    def _checkpoint(self, t: float, j: int, attempt: int) -> None:
        if self.attempt[j] != attempt or self.state[j] != RUNNING:
            return
        self.ckpt_mark[j] = t
        self.sched.checkpointed(self._specs[j].id, t)  # type: ignore[attr-defined]
        nxt = t + self._ckpt[j]
        if nxt < self.work_start[j] + (self._dur[j] - self.progress[j]):
            self.kernel.schedule(nxt, EventKind.CHECKPOINT, j, attempt)

    def _completion(self, t: float, j: int, attempt: int) -> None:
        if self.attempt[j] != attempt or self.state[j] != RUNNING:
            return
        jid = self._specs[j].id  # type: ignore[attr-defined]
        self.sched.job_ended(jid, t)
        work = self._dur[j] - self.progress[j]
        self._close(j, t, COMPLETED, work, work)
        self.progress[j] = self._dur[j]
        self.state[j] = DONE
        self.end[j] = t
        del self._live[jid]
        del self._specs[j]
        self.unfinished -= 1
        self.dirty = True
        if self.unfinished == 0:
            self.kernel.stopped = True
        elif self.config.cycle_on_events:
            self.kernel.request_cycle(t)

    def _preempt(self, t: float, p: PreemptJob) -> None:
        j = self._live[p.job_id]
        if self.state[j] != RUNNING:
            return
        self.state[j] = STOPPING
        self.sigterm[j] = t
        self.n_preempt[j] += 1
        self.kernel.schedule(t + self._grace, EventKind.STOP, j, self.attempt[j])

    def _stop(self, t: float, j: int, attempt: int) -> None:
        if self.attempt[j] != attempt or self.state[j] != STOPPING:
            return
        work = max(0.0, self.sigterm[j] - self.work_start[j])
        if self.config.preempt_checkpoint and self._ckpt[j] == self._ckpt[j]:
            saved = work
        else:
            saved = max(0.0, min(self.ckpt_mark[j], self.sigterm[j]) - self.work_start[j])
        self._requeue(t, j, PREEMPTED, work, saved)

    def _requeue(self, t: float, j: int, reason: int, work: float, saved: float) -> None:
        self.sched.job_ended(self._specs[j].id, t)  # type: ignore[attr-defined]
        self._close(j, t, reason, work, saved)
        self.progress[j] += saved
        self._enqueue(j, t)
        self.dirty = True
        if self.config.cycle_on_events:
            self.kernel.request_cycle(t)

    def _close(self, j: int, t: float, reason: int, work: float, saved: float) -> None:
        """Record one attempt: held = useful (saved) + lost (work not saved) + overhead."""
        g = self._gpus[j]
        held = g * (t - self.hold_start[j])
        self.a_job.append(j)
        self.a_queued.append(self.queued_since[j])
        self.a_start.append(self.hold_start[j])
        self.a_end.append(t)
        self.a_useful.append(g * saved)
        self.a_lost.append(g * (work - saved))
        self.a_overhead.append(held - g * work)
        self.a_reason.append(reason)
        self.busy -= g
        self._v_closed += held

    def _node_failure(self, t: float, scripted: int, _b: int) -> None:
        if scripted:
            node, _down, up = self.config.outages[scripted - 1]
            repair_at = up
            if not self.node_up[node]:
                return
        else:
            fp = self.failure
            assert fp is not None
            self.kernel.schedule(fp.next_time(t), EventKind.NODE_FAILURE)
            node = fp.pick_node()
            if not self.node_up[node]:
                return  # thinning: only up nodes fail
            repair_at = t + fp.repair_time()
        for jid in self.sched.node_down(node, t):
            j = self._live[jid]
            stop = self.sigterm[j] if self.state[j] == STOPPING else t
            work = max(0.0, stop - self.work_start[j])
            saved = max(0.0, min(self.ckpt_mark[j], stop) - self.work_start[j])
            self.n_fail[j] += 1
            self._requeue(t, j, FAILED, work, saved)
        self.node_up[node] = False
        self.up_gpus -= self._node_gpus[node]
        self._outage_row[node] = len(self.o_node)
        self.o_node.append(node)
        self.o_down.append(t)
        self.o_up.append(math.nan)
        self.kernel.schedule(repair_at, EventKind.NODE_REPAIR, node)
        self.dirty = True
        if self.config.cycle_on_events:
            self.kernel.request_cycle(t)

    def _node_repair(self, t: float, node: int, _b: int) -> None:
        self.sched.node_up(node, t)
        self.node_up[node] = True
        self.up_gpus += self._node_gpus[node]
        self.o_up[self._outage_row.pop(node)] = t
        self.dirty = True
        if self.config.cycle_on_events:
            self.kernel.request_cycle(t)

    # ------------------------------------------------------------ validation
    def _validate(self) -> None:
        self._validate_at(self.kernel.now)

    def _validate_at(self, now: float) -> None:
        """The core's invariants plus the twin's: states agree, GPU-seconds are conserved."""
        s = self.sched
        s.check_invariants()
        self._v_integral += self._v_busy * (now - self._v_t)
        self._v_t = now
        self._v_busy = self.busy
        running = 0
        open_held = 0.0
        for jid, j in self._live.items():
            st = self.state[j]
            in_p, in_r = jid in s.pending, jid in s.running
            if in_p and in_r:
                raise InvariantError(f"job {jid} is both pending and running")
            if (st == PENDING and not in_p) or (st in (RUNNING, STOPPING) and not in_r):
                raise InvariantError(f"job {jid}: twin state {st} disagrees with the core")
            if st in (RUNNING, STOPPING):
                running += self._gpus[j]
                open_held += self._gpus[j] * (now - self.hold_start[j])
            if self.progress[j] > self._dur[j] + 1e-6:
                raise InvariantError(f"job {jid}: progress beyond its duration")
        if len(s.pending) != self.pending or running != self.busy:
            raise InvariantError(
                f"counts drifted: pending {len(s.pending)} vs {self.pending}, busy GPUs {running} vs {self.busy}"
            )
        if sum(rj.spec.gpus for rj in s.running.values()) != self.busy:
            raise InvariantError("the core's running jobs hold a different number of GPUs")
        if self.busy > self.up_gpus:
            raise InvariantError(f"{self.busy} GPUs busy but only {self.up_gpus} up")
        total = self._v_closed + open_held
        if not math.isclose(self._v_integral, total, rel_tol=1e-9, abs_tol=1e-3):
            raise InvariantError(
                f"GPU-seconds not conserved: integral {self._v_integral:.3f} vs records {total:.3f}"
            )

    # ---------------------------------------------------------------- result
    def _result(self, end: float, wall: float) -> SimResult:
        for _jid, j in list(self._live.items()):
            st = self.state[j]
            if st in (RUNNING, STOPPING):
                stop = self.sigterm[j] if st == STOPPING else end
                work = max(0.0, stop - self.work_start[j])
                self._close(j, end, UNFINISHED, work, work)
            elif st == PENDING:
                self.queued[j] += end - self.queued_since[j]
        return tables(self, end, wall)

    def assumptions(self) -> list[str]:
        cfg = self.config
        out = list(self.w.notes)
        out += [
            f"policy {self.sched.policy.name}: {self.sched.policy.doc}",
            f"scheduler config: {cfg.scheduler}",
            f"scheduling cycle runs {cfg.cycle_text}"
            + ("; a periodic cycle is skipped when nothing happened since a cycle that decided "
               "nothing (the core would decide the same)" if cfg.cycle_interval > 0 else
               "; decisions that only the passage of time would change (a victim's minimum runtime "
               "running out) wait for the next event"),
            f"a started job holds its GPUs at once; useful work starts after {cfg.start_overhead:g} s",
            "checkpoints cost nothing and happen every checkpoint_interval seconds of work in each attempt",
            f"a preempted job stops {self._grace:g} s after SIGTERM (the core's preemption grace), "
            + ("and a checkpointable one saves its progress at SIGTERM"
               if cfg.preempt_checkpoint else "keeping only its last periodic checkpoint"),
            "a job on a failed node stops at once and keeps only its last checkpoint",
            "an interrupted job is requeued at once with the same spec and its saved progress",
            (cfg.failures.describe() if cfg.failures is not None else "no random node failures"),
            "jobs run exactly their recorded or drawn duration on any accelerator and placement "
            "(no slowdown from topology or interference)",
        ]
        if cfg.outages:
            out.append(f"{len(cfg.outages)} scripted node outage(s)")
        if cfg.until < math.inf:
            out.append(f"the run stops at t={cfg.until:g} s; jobs not finished then are reported as such")
        return out


def simulate(
    facility: Facility,
    workload: Workload,
    config: SimConfig | None = None,
    tree: Sequence[TenantSpec] | None = None,
    tree_name: str = "the share tree",
    progress: ProgressFn | None = None,
) -> SimResult:
    """Run one simulation and return its raw records."""
    return Simulation(facility, workload, config, tree, tree_name).run(progress)
