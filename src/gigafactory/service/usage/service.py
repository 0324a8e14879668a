"""Read the usage ledger and the guarantee ledger, limited to what the caller may see.

Finished runs are attributed to the window in which they ended; runs still going are
added (so far) when the window reaches the present.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased

from gigafactory.service.auth.access import (
    Principal,
    project_scope,
    tenant_chain,
    visible_projects,
)
from gigafactory.service.auth.roles import Cap
from gigafactory.service.errors import Invalid, NotFound
from gigafactory.service.jobs.models import Job
from gigafactory.service.tenants.models import Tenant
from gigafactory.service.usage.models import GuaranteeLedger, UsageRecord
from gigafactory.service.usage.schemas import (
    GuaranteeLedgerOut,
    GuaranteeRow,
    PartnerUsage,
    ProjectUsage,
    UsageRecordOut,
    UsageReport,
)


def _window(since: datetime, until: datetime) -> None:
    if until <= since:
        raise Invalid(["query", "until"], "until must be after since")


def _projects_in_scope(
    db: Session, who: Principal, project: str | None, partner: str | None
) -> list[Tenant]:
    prog = aliased(Tenant)
    q = (
        select(Tenant)
        .join(prog, prog.id == Tenant.parent_id)
        .where(Tenant.kind == "project")
        .order_by(Tenant.name)
    )
    if project is not None:
        q = q.where(Tenant.name == project)
    if partner is not None:
        pid = db.scalar(select(Tenant.id).where(Tenant.name == partner, Tenant.kind == "partner"))
        if pid is None or (not who.can(Cap.READ, (pid,)) and not _reads_below(db, who, pid)):
            raise NotFound(f"no partner {partner!r}")
        q = q.where(prog.parent_id == pid)
    rows = list(db.scalars(q))
    visible = visible_projects(db, who)
    if visible is not None:
        keep = set(visible)
        rows = [r for r in rows if r.id in keep]
    if project is not None and not rows:
        raise NotFound(f"no project {project!r}")
    return rows


def _reads_below(db: Session, who: Principal, partner_id: int) -> bool:
    visible = visible_projects(db, who)
    if visible is None:
        return True
    return any(partner_id in tenant_chain(db, p) for p in visible)


def _partner_of(db: Session, project: Tenant) -> Tenant:
    chain = tenant_chain(db, project.id)
    partner = db.get(Tenant, chain[-1])
    assert partner is not None
    return partner


def report(
    db: Session,
    who: Principal,
    since: datetime,
    until: datetime,
    now: datetime,
    project: str | None = None,
    partner: str | None = None,
) -> UsageReport:
    _window(since, until)
    projects = _projects_in_scope(db, who, project, partner)
    ids = [p.id for p in projects]
    finished: dict[int, tuple[float, int]] = {}
    if ids:
        for pid, secs, runs in db.execute(
            select(UsageRecord.project_id, func.sum(UsageRecord.gpu_seconds), func.count())
            .where(UsageRecord.project_id.in_(ids))
            .where(UsageRecord.ended_at >= since, UsageRecord.ended_at < until)
            .group_by(UsageRecord.project_id)
        ):
            finished[pid] = (float(secs or 0.0), int(runs))
    live: dict[int, float] = defaultdict(float)
    if ids and until >= now:
        for pid, gpus, started in db.execute(
            select(Job.project_id, Job.gpus, Job.started_at).where(
                Job.project_id.in_(ids), Job.active.is_(True), Job.started_at.is_not(None)
            )
        ):
            if started is not None:
                live[pid] += gpus * max(0.0, (now - max(started, since)).total_seconds())
    rows: list[ProjectUsage] = []
    per_partner: dict[str, float] = defaultdict(float)
    for p in projects:
        secs, runs = finished.get(p.id, (0.0, 0))
        partner_name = _partner_of(db, p).name
        rows.append(ProjectUsage(
            project=p.name,
            partner=partner_name,
            finished_gpu_hours=secs / 3600.0,
            running_gpu_hours=live[p.id] / 3600.0,
            runs=runs,
            budget_gpu_hours=p.budget_gpu_hours,
            budget_used_gpu_hours=p.budget_used_gpu_hours,
        ))
        per_partner[partner_name] += (secs + live[p.id]) / 3600.0
    return UsageReport(
        since=since,
        until=until,
        projects=rows,
        partners=[PartnerUsage(partner=k, gpu_hours=v) for k, v in sorted(per_partner.items())],
    )


def records(
    db: Session,
    who: Principal,
    *,
    limit: int,
    cursor: int | None,
    project: str | None,
    job_id: int | None,
) -> tuple[list[UsageRecordOut], int | None]:
    """Per-run usage rows, newest first, keyset-paginated."""
    q = (
        select(UsageRecord, Tenant.name)
        .join(Tenant, Tenant.id == UsageRecord.project_id)
        .order_by(UsageRecord.id.desc())
        .limit(limit + 1)
    )
    scope = project_scope(db, who, UsageRecord.project_id, project)
    if scope is not None:
        q = q.where(scope)
    if job_id is not None:
        q = q.where(UsageRecord.job_id == job_id)
    if cursor is not None:
        q = q.where(UsageRecord.id < cursor)
    rows = db.execute(q).all()
    out = [
        UsageRecordOut(
            id=r.id, job_id=r.job_id, project=name, gpus=r.gpus, started_at=r.started_at,
            ended_at=r.ended_at, gpu_hours=r.gpu_seconds / 3600.0, outcome=r.outcome,
        )
        for r, name in rows[:limit]
    ]
    return out, (rows[limit - 1][0].id if len(rows) > limit else None)


def guarantees(
    db: Session, who: Principal, since: datetime, until: datetime, partner: str | None
) -> GuaranteeLedgerOut:
    """Owed, delivered, unmet and lent GPU-hours per partner (partner-level readers only)."""
    _window(since, until)
    q = select(Tenant).where(Tenant.kind == "partner").order_by(Tenant.name)
    if partner is not None:
        q = q.where(Tenant.name == partner)
    partners = [p for p in db.scalars(q) if who.can(Cap.READ, (p.id,))]
    if partner is not None and not partners:
        raise NotFound(f"no partner {partner!r}")
    sums: dict[int, tuple[float, float, float, float]] = {}
    if partners:
        for pid, owed, delivered, lent, used in db.execute(
            select(
                GuaranteeLedger.partner_id,
                func.sum(GuaranteeLedger.owed_gpu_seconds),
                func.sum(GuaranteeLedger.delivered_gpu_seconds),
                func.sum(GuaranteeLedger.lent_gpu_seconds),
                func.sum(GuaranteeLedger.used_gpu_seconds),
            )
            .where(GuaranteeLedger.partner_id.in_([p.id for p in partners]))
            .where(GuaranteeLedger.hour >= since, GuaranteeLedger.hour < until)
            .group_by(GuaranteeLedger.partner_id)
        ):
            sums[pid] = (float(owed or 0), float(delivered or 0), float(lent or 0), float(used or 0))
    rows = []
    for p in partners:
        owed, delivered, lent, used = sums.get(p.id, (0.0, 0.0, 0.0, 0.0))
        rows.append(GuaranteeRow(
            partner=p.name,
            guarantee_gpus=p.guarantee,
            owed_gpu_hours=owed / 3600.0,
            delivered_gpu_hours=delivered / 3600.0,
            unmet_gpu_hours=max(0.0, owed - delivered) / 3600.0,
            lent_gpu_hours=lent / 3600.0,
            used_gpu_hours=used / 3600.0,
        ))
    return GuaranteeLedgerOut(since=since, until=until, partners=rows)
