"""The guarantee ledger: per partner and hour, GPU-seconds owed, delivered and lent.

Accumulated by the loop over each interval between two cycles, from the jobs that held
GPUs during it (the snapshot's active jobs) and the demand that waited (queued jobs):

* owed      = min(guarantee, demand), where demand = GPUs used + GPUs wanted by queued jobs;
* delivered = min(used, owed);
* lent      = the partner's idle guarantee (up to its lend limit) that others used above
  their own guarantees, shared pro rata among lenders;
* used      = everything the partner's projects held, borrowed capacity included.

Intervals longer than ``max_gap`` (the control plane was down) count only ``max_gap``:
nothing can be claimed about a time nobody watched.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from gigafactory.service.db import from_epoch
from gigafactory.service.scheduler.snapshot import Snapshot
from gigafactory.service.usage.models import GuaranteeLedger


def _hours(start: float, end: float) -> list[tuple[datetime, float]]:
    """Split ``[start, end)`` into (hour bucket, seconds) pieces."""
    out: list[tuple[datetime, float]] = []
    t = start
    while t < end:
        hour = from_epoch(t).replace(minute=0, second=0, microsecond=0)
        nxt = min(end, (hour + timedelta(hours=1)).timestamp())
        out.append((hour, nxt - t))
        t = nxt
    return out


def accumulate(db: Session, snap: Snapshot, max_gap: float) -> None:
    """Add the interval since the previous cycle to the ledger (caller commits)."""
    dt = min(max(0.0, snap.now - snap.last), max_gap)
    if dt <= 0:
        return
    partners = {t.id: t for t in snap.tenants.values() if t.kind == "partner"}
    used: dict[int, float] = defaultdict(float)
    wanted: dict[int, float] = defaultdict(float)
    for job in snap.active:
        used[snap.partner_id(job.project_id)] += job.gpus
    for job in snap.queued:
        wanted[snap.partner_id(job.project_id)] += job.gpus
    rates: dict[int, tuple[float, float, float, float]] = {}
    idle: dict[int, float] = {}
    borrowed = 0.0
    for pid, p in partners.items():
        owed = min(float(p.guarantee), used[pid] + wanted[pid])
        spare = max(0.0, p.guarantee - used[pid])
        if p.lend_limit is not None:
            spare = min(spare, float(p.lend_limit))
        idle[pid] = spare
        borrowed += max(0.0, used[pid] - p.guarantee)
        rates[pid] = (owed, min(used[pid], owed), 0.0, used[pid])
    total_idle = sum(idle.values())
    if total_idle > 0 and borrowed > 0:
        share = min(1.0, borrowed / total_idle)
        for pid, spare in idle.items():
            o, d, _, u = rates[pid]
            rates[pid] = (o, d, spare * share, u)
    start = snap.now - dt
    for hour, secs in _hours(start, snap.now):
        rows = {r.partner_id: r for r in db.scalars(
            select(GuaranteeLedger).where(GuaranteeLedger.hour == hour)
        )}
        for pid, (owed, delivered, lent, use) in rates.items():
            if not (owed or lent or use):
                continue
            row = rows.get(pid)
            if row is None:
                row = GuaranteeLedger(partner_id=pid, hour=hour, owed_gpu_seconds=0.0,
                                      delivered_gpu_seconds=0.0, lent_gpu_seconds=0.0,
                                      used_gpu_seconds=0.0)
                db.add(row)
            row.owed_gpu_seconds += owed * secs
            row.delivered_gpu_seconds += delivered * secs
            row.lent_gpu_seconds += lent * secs
            row.used_gpu_seconds += use * secs
