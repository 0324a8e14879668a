"""``gigafactory serve --demo``: seed a small facility and keep demo jobs flowing.

The share tree is the dev-32 picture of DESIGN.md §1: an EU public partner (with an SME
track and a science programme), the host state, and a private investor, each with a
guarantee. Users hold one role each, and get fresh tokens at every start (tokens are
stored hashed, so earlier ones cannot be shown again). A feeder submits small
``examples/train_tiny.py`` jobs through the same service code as the API, so the queue,
preemption and the ledgers have something to show.
"""

from __future__ import annotations

import random
import sys
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gigafactory.service.audit.service import record
from gigafactory.service.auth.access import Principal
from gigafactory.service.auth.models import Membership, User
from gigafactory.service.auth.roles import Role
from gigafactory.service.auth.service import issue_token
from gigafactory.service.bootstrap import create_user_with_token
from gigafactory.service.deps import ServiceContext
from gigafactory.service.jobs.models import Job
from gigafactory.service.jobs.schemas import JobSubmit
from gigafactory.service.jobs.service import submit
from gigafactory.service.tenants.models import Tenant

#: (kind, name, parent, guarantee, borrow limit, class, title)
TREE: list[tuple[str, str, str | None, int, int | None, str | None, str]] = [
    ("partner", "eu-public", None, 16, None, "public", "EuroHPC JU (EU public)"),
    ("programme", "sme-track", "eu-public", 8, None, None, "Startups and SMEs"),
    ("project", "startup-llm", "sme-track", 8, None, "startup", "A startup's 7B model"),
    ("programme", "science", "eu-public", 8, None, None, "Public research"),
    ("project", "climate-lab", "science", 8, None, "academic", "Climate emulator"),
    ("partner", "host-state", None, 8, None, "public", "Host state"),
    ("programme", "national-ai", "host-state", 8, None, None, "National AI programme"),
    ("project", "gov-ai", "national-ai", 8, None, "public", "Public-sector assistants"),
    ("partner", "private-investor", None, 8, 16, "industry", "Private investor"),
    ("programme", "industry", "private-investor", 8, 16, None, "Industrial users"),
    ("project", "industry-co", "industry", 8, 16, "industry", "An industrial foundation model"),
]
#: (user, role, tenant)
USERS: list[tuple[str, Role, str | None]] = [
    ("admin", Role.ADMIN, None),
    ("eu-manager", Role.PARTNER_MANAGER, "eu-public"),
    ("startup-lead", Role.PROJECT_LEAD, "startup-llm"),
    ("researcher", Role.MEMBER, "climate-lab"),
    ("gov-dev", Role.MEMBER, "gov-ai"),
    ("industry-dev", Role.MEMBER, "industry-co"),
    ("auditor", Role.VIEWER, "private-investor"),
]
SUBMITTERS = [("startup-lead", "startup-llm"), ("researcher", "climate-lab"),
              ("gov-dev", "gov-ai"), ("industry-dev", "industry-co")]
BUDGETS = {"startup-llm": 500.0, "climate-lab": 2000.0}


def train_command(steps: int, sleep: float) -> list[str]:
    """``examples/train_tiny.py`` from this checkout, or a stand-in when installed."""
    script = Path(__file__).resolve().parents[3] / "examples" / "train_tiny.py"
    if script.is_file():
        return [sys.executable, str(script), "--steps", str(steps), "--step-sleep", str(sleep),
                "--checkpoint-every", "25", "--log-every", "50"]
    code = f"import time\nfor i in range({steps}):\n    time.sleep({sleep})\nprint('done')"
    return [sys.executable, "-c", code]


def _seed(db: Session, now: datetime) -> None:
    """The demo tree (on a database without tenants) and any missing demo users."""
    ids: dict[str, int] = {t.name: t.id for t in db.scalars(select(Tenant))}
    for kind, name, parent, guarantee, borrow, cls, title in TREE:
        t = Tenant(name=name, kind=kind, parent_id=ids.get(parent) if parent else None,
                   guarantee=guarantee, borrow_limit=borrow, weight=1.0, tenant_class=cls,
                   title=title, budget_gpu_hours=BUDGETS.get(name),
                   budget_expires_at=now + timedelta(days=90) if name in BUDGETS else None,
                   budget_used_gpu_hours=0.0, created_at=now, updated_at=now)
        if name in ids:
            continue
        db.add(t)
        db.flush()
        ids[name] = t.id
        record(db, "demo", f"{kind}.create", f"{kind}:{name}", now, guarantee=guarantee)
    for name, role, tenant in USERS:
        if db.scalar(select(User.id).where(User.name == name)) is None and (
            tenant is None or tenant in ids
        ):
            grant = [(ids[tenant] if tenant else None, role)]
            create_user_with_token(db, name, now, grants=grant, actor="demo")


def seed(ctx: ServiceContext, url: str) -> list[str]:
    """Seed once; print fresh tokens and commands; start the job feeder."""
    now = ctx.clock()
    tokens: dict[str, str] = {}
    with ctx.sessions() as db:
        if not db.scalar(select(func.count()).select_from(Tenant)):
            _seed(db, now)
            db.commit()
        for name, _, _ in USERS:
            user = db.scalar(select(User).where(User.name == name))
            if user is not None:
                _, tokens[name] = issue_token(db, user, "demo session", now + timedelta(days=7), now)
        db.commit()
    ctx.extras.setdefault("loop_hooks", []).append(DemoFeeder(ctx))
    width = max(len(n) for n in tokens)
    roles = {n: f"{r.value}@{t or 'facility'}" for n, r, t in USERS}
    lines = ["", "demo: dev-32 facility, 3 partners, local executor; demo jobs keep arriving.",
             "tokens (valid 7 days; new ones at every start):"]
    lines += [f"  {n:<{width}}  {roles.get(n, ''):<30} {tok}" for n, tok in tokens.items()]
    researcher = tokens.get("researcher", "<token>")
    cmd = " ".join(train_command(2000, 0.05)[1:]).replace(sys.executable, "python")
    lines += ["", "try:",
              f"  gigafactory login --url {url} --token {researcher}",
              f"  gigafactory submit --project climate-lab --gpus 8 --walltime 30m "
              f"--checkpoint-every 1m -- python {cmd}",
              "  gigafactory jobs",
              "  gigafactory show <job id>      # why it is pending, when it will start",
              "  gigafactory logs -f <job id>",
              "  gigafactory usage             # budgets; --guarantees for the partners' ledger",
              f"  open {url}/docs               # the API, with OpenAPI",
              f"  curl {url}/metrics"]
    return lines


def principal_for(db: Session, name: str) -> Principal:
    user = db.scalar(select(User).where(User.name == name))
    assert user is not None
    grants = db.execute(select(Membership.tenant_id, Membership.role)
                        .where(Membership.user_id == user.id)).all()
    return Principal(user_id=user.id, name=user.name, grants=tuple((t, Role(r)) for t, r in grants))


class DemoFeeder:
    """After each scheduler cycle: top the queue up to ``target`` jobs, one per ``every`` s."""

    def __init__(self, ctx: ServiceContext, target: int = 12, every: float = 3.0, seed: int = 7) -> None:
        self.ctx = ctx
        self.target = target
        self.every = every
        self.rng = random.Random(seed)
        self.last: datetime | None = None

    def __call__(self) -> None:
        now = self.ctx.clock()
        if self.last is not None and (now - self.last).total_seconds() < self.every:
            return
        self.last = now
        with self.ctx.sessions() as db:
            live = db.scalar(select(func.count()).select_from(Job).where(
                Job.state.in_(("pending", "requeued", "starting", "running", "preempting"))))
            if (live or 0) >= self.target:
                return
            user, project = self.rng.choice(SUBMITTERS)
            gpus = self.rng.choice([1, 2, 4, 4, 8, 8, 16])
            steps = self.rng.choice([400, 800, 1600])
            body = JobSubmit(
                project=project, gpus=gpus, name=f"demo-{project}-{steps}",
                # Read by the twin executor (simulated work); the local one ignores it.
                env={"GIGAFACTORY_TWIN_DURATION": str(steps * 3),
                     "GIGAFACTORY_TWIN_CHECKPOINT_INTERVAL": "60"},
                command=train_command(steps, 0.05), walltime=1800.0,
                runtime_estimate=steps * 0.05 + 10, checkpointable=True,
                checkpoint_interval=30.0, grace_period=10.0,
                priority=self.rng.choice(["normal", "normal", "normal", "preemptible", "urgent"]),
            )
            try:
                submit(db, principal_for(db, user), body, None, self.ctx.settings,
                       self.ctx.facility, now)
            except Exception:  # a refused demo job (budget) is not worth a traceback
                db.rollback()
