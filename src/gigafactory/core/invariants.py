"""Consistency checks of a scheduler's state, run after every step when validating."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from gigafactory.core.scheduler import Scheduler


def check(s: Scheduler) -> None:
    """Raise :class:`InvariantError` if any accelerator is double-booked, a gang is
    partial, a limit is exceeded, or a counter drifted."""
    from gigafactory.core.scheduler import InvariantError

    f = s.facility
    use = np.zeros(f.n_nodes, dtype=np.int64)
    used = np.zeros(len(s.tree))
    for jid, rj in s.running.items():
        if jid in s.pending:
            raise InvariantError(f"job {jid} is both pending and running")
        if int(rj.counts.sum()) != rj.spec.gpus:
            raise InvariantError(f"job {jid}: gang holds {int(rj.counts.sum())} of {rj.spec.gpus} GPUs")
        if len(set(rj.nodes.tolist())) != rj.nodes.shape[0] or (rj.counts <= 0).any():
            raise InvariantError(f"job {jid}: malformed placement")
        if len(set(f.node_site[rj.nodes].tolist())) != 1 or len(set(f.node_accel[rj.nodes].tolist())) != 1:
            raise InvariantError(f"job {jid}: gang spans sites or accelerator types")
        np.add.at(use, rj.nodes, rj.counts)
        for a in s.tree.path[rj.tenant]:
            used[a] += rj.spec.gpus
    cap = f.node_gpus
    if (use > cap).any():
        node = int(np.flatnonzero(use > cap)[0])
        raise InvariantError(f"node {node}: {int(use[node])} GPUs given out of {int(cap[node])}")
    if not np.array_equal(s.state.node_free + s.state.held, cap - use):
        raise InvariantError("free counts disagree with running jobs' placements")
    if (s.state.node_free[~s.state.node_up] != 0).any() or (s.state.held[s.state.node_up] != 0).any():
        raise InvariantError("a down node offers free GPUs, or an up node holds some back")
    if not np.allclose(used, s.used):
        raise InvariantError("per-tenant usage counters drifted")
    over = used > s.tree.cap + 1e-9
    if over.any():
        i = int(np.flatnonzero(over)[0])
        raise InvariantError(f"tenant {s.tree.names[i]} holds {int(used[i])} GPUs above its cap")
    if int(s.queue.alive.sum()) != len(s.pending):
        raise InvariantError("the queue and the pending jobs disagree")
    try:
        s.state.check()
        s.queue.check()
    except AssertionError as exc:
        raise InvariantError(str(exc)) from None
