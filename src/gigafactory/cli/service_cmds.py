"""Control-plane commands: ``serve``, ``login``, ``submit``, ``jobs``, ``show``, ``logs``,
``cancel``/``hold``/``release``/``requeue``, ``usage`` and ``admin …``.

Everything except ``serve`` talks to the API through :class:`gigafactory.client.Client`
(URL and token from ``gigafactory login`` or ``GIGAFACTORY_URL``/``GIGAFACTORY_TOKEN``).
Tables print with Rich; ``--json`` prints the API's JSON for scripts.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

from gigafactory.client import ApiError, Client, Credentials, load_credentials, save_credentials
from gigafactory.client.config import format_duration, parse_duration

out = Console(soft_wrap=True)
admin_app = typer.Typer(help="Administer the share tree, users, roles, tokens, budgets.",
                        no_args_is_help=True)
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]


def UserError(message: str) -> Exception:
    """The CLI's one-line user error (imported late: cli.main imports this module)."""
    from gigafactory.cli.main import UserError as _UserError

    return _UserError(message)


@contextmanager
def client() -> Iterator[Client]:
    """A client from the saved credentials; API errors become one-line user errors."""
    creds = load_credentials()
    if not creds.token:
        raise UserError("not logged in: run 'gigafactory login --token <token>' "
                        "(or set GIGAFACTORY_TOKEN)")
    gf = Client(creds.url, creds.token)
    try:
        yield gf
    except ApiError as exc:
        raise UserError(exc.message) from None
    finally:
        gf.close()


def _dump(data: Any) -> None:
    if isinstance(data, BaseModel):
        data = data.model_dump(mode="json")
    elif isinstance(data, list):
        data = [d.model_dump(mode="json") if isinstance(d, BaseModel) else d for d in data]
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def _when(t: datetime | None) -> str:
    if t is None:
        return "-"
    delta = (t - datetime.now(UTC)).total_seconds()
    stamp = t.astimezone().strftime("%Y-%m-%d %H:%M:%S")
    if abs(delta) < 7 * 86400:
        rel = format_duration(abs(delta))
        return f"{stamp} ({'in ' + rel if delta > 0 else rel + ' ago'})"
    return stamp


def _table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    table = Table(title=title, title_justify="left")
    for c in columns:
        table.add_column(c)
    for row in rows:
        table.add_row(*("-" if v is None else str(v) for v in row))
    out.print(table)


STATE_STYLE = {"running": "green", "pending": "yellow", "requeued": "yellow", "held": "magenta",
               "failed": "red", "cancelled": "dim", "completed": "blue", "preempting": "red",
               "starting": "green"}


def _state(s: str) -> str:
    return f"[{STATE_STYLE.get(s, 'white')}]{s}[/]"


# --- serve and login ----------------------------------------------------------------------


def serve(
    demo: Annotated[bool, typer.Option(help="seed a demo facility and keep demo jobs flowing")] = False,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
) -> None:
    """Run the control plane: migrate the database (./gigafactory.db by default, or
    GIGAFACTORY_DATABASE_URL), start the scheduler loop and serve the API.

    Settings come from GIGAFACTORY_* environment variables or ./gigafactory.toml;
    docs/control-plane.md lists every one."""
    import uvicorn

    from gigafactory.service.serve import prepare

    try:
        app, banner = prepare(demo=demo, host=host, port=port)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    out.print(banner)
    uvicorn.run(app, host=host, port=port, log_level="warning")


def login(
    token: Annotated[str | None, typer.Option(help="API token (prompted when omitted)")] = None,
    url: Annotated[str | None, typer.Option(help="control plane URL")] = None,
) -> None:
    """Check a token against the server and save URL and token for later commands."""
    creds = load_credentials()
    url = (url or creds.url).rstrip("/")
    token = token or typer.prompt("API token", hide_input=True)
    with Client(url, token) as gf:
        try:
            me = gf.me()
        except ApiError as exc:
            raise UserError(f"login failed at {url}: {exc.message}") from None
    path = save_credentials(Credentials(url=url, token=token))
    roles = ", ".join(f"{m.role}@{m.tenant or 'facility'}" for m in me.memberships) or "no roles"
    out.print(f"logged in to {url} as [bold]{me.user.name}[/] ({roles}); saved to {path}")


# --- jobs ---------------------------------------------------------------------------------


def submit(
    command: Annotated[list[str], typer.Argument(help="the command, after '--'")],
    project: Annotated[str, typer.Option("--project", "-p", help="project to charge")],
    gpus: Annotated[int, typer.Option("--gpus", "-g", help="accelerators (a gang)")] = 1,
    walltime: Annotated[str, typer.Option("--walltime", "-t", help="limit, e.g. 2h, 30m, 1-00:00:00")] = "24h",
    name: Annotated[str, typer.Option("--name", "-J", help="job name")] = "",
    estimate: Annotated[str | None, typer.Option(help="expected runtime (helps backfill)")] = None,
    accelerator: Annotated[str | None, typer.Option(help="accelerator type, e.g. H100")] = None,
    topology: Annotated[str, typer.Option(help="any | nvlink | block | fewest-blocks")] = "any",
    priority: Annotated[str, typer.Option(help="urgent | normal | preemptible")] = "normal",
    checkpoint_every: Annotated[str | None, typer.Option(help="checkpoint interval; marks the job checkpointable")] = None,
    grace: Annotated[str | None, typer.Option(help="SIGTERM-to-kill grace period")] = None,
    env: Annotated[list[str] | None, typer.Option("--env", "-e", help="KEY=VALUE, repeatable")] = None,
    workdir: Annotated[str | None, typer.Option(help="working directory")] = None,
    idempotency_key: Annotated[str | None, typer.Option(help="retry-safe key")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Submit a job, like sbatch: gigafactory submit -p P -g 8 -t 2h -- python train.py"""
    try:
        variables = dict(item.split("=", 1) for item in env or [])
    except ValueError:
        raise UserError("--env expects KEY=VALUE") from None
    try:
        fields: dict[str, Any] = {
            "project": project, "gpus": gpus, "command": command, "name": name,
            "walltime": parse_duration(walltime), "topology": topology, "priority": priority,
            "env": variables, "accelerator": accelerator, "workdir": workdir,
            "runtime_estimate": parse_duration(estimate) if estimate else None,
            "checkpointable": checkpoint_every is not None,
            "checkpoint_interval": parse_duration(checkpoint_every) if checkpoint_every else None,
            "grace_period": parse_duration(grace) if grace else None,
        }
    except ValueError as exc:
        raise UserError(str(exc)) from None
    with client() as gf:
        job = gf.submit(idempotency_key=idempotency_key,
                        **{k: v for k, v in fields.items() if v is not None})
    if as_json:
        _dump(job)
    else:
        out.print(f"Submitted job [bold]{job.id}[/] ({_state(job.state)}) to {job.project}")


def jobs(
    project: Annotated[str | None, typer.Option("--project", "-p")] = None,
    state: Annotated[list[str] | None, typer.Option("--state", "-s", help="repeatable")] = None,
    user: Annotated[str | None, typer.Option("--user", "-u")] = None,
    limit: Annotated[int, typer.Option(help="rows to show")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """List jobs you may see, newest first (keyset-paginated under the hood)."""
    with client() as gf:
        rows = []
        for job in gf.iter_jobs(project=project, states=state or [], user=user,
                                limit=min(limit, 500)):
            rows.append(job)
            if len(rows) >= limit:
                break
    if as_json:
        _dump(rows)
        return
    _table("jobs", ["id", "state", "project", "user", "gpus", "name", "submitted", "start / reason"], [
        (j.id, _state(j.state), j.project, j.user, j.gpus, j.name, _when(j.submitted_at),
         (f"{_when(j.estimated_start)} {j.pending_reason or ''}" if j.state in ("pending", "requeued")
          else j.state_reason)[:80])
        for j in rows
    ])


def show(job_id: Annotated[int, typer.Argument()], as_json: JsonOpt = False) -> None:
    """A job's details, why it is pending and when it should start, and its history."""
    with client() as gf:
        job = gf.job(job_id)
    if as_json:
        _dump(job)
        return
    out.print(f"[bold]job {job.id}[/] {job.name!r} — {_state(job.state)}: {job.state_reason}")
    out.print(f"  project {job.project}, user {job.user}, {job.gpus} GPUs "
              f"({job.accelerator or 'any type'}, topology {job.topology}), priority {job.priority}")
    out.print(f"  walltime {format_duration(job.walltime)}, used {job.gpu_hours:.2f} GPU-hours, "
              f"restarts {job.restart_count}")
    out.print(f"  command: {' '.join(job.command)}")
    if job.state in ("pending", "requeued"):
        out.print(f"  [yellow]pending:[/] {job.pending_reason or '-'}; estimated start "
                  f"{_when(job.estimated_start)}")
    if job.placement:
        out.print("  placement: " + ", ".join(f"{p.node}:{','.join(map(str, p.devices))}"
                                              for p in job.placement))
    _table("events", ["when", "from", "to", "by", "reason"],
           [(_when(e.at), e.from_state, e.to_state, e.actor, e.reason) for e in job.events])


def logs(
    job_id: Annotated[int, typer.Argument()],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="keep printing until the job ends")] = False,
) -> None:
    """Print a job's output (all attempts)."""
    with client() as gf:
        if follow:
            for text in gf.stream_logs(job_id):
                sys.stdout.write(text)
                sys.stdout.flush()
            return
        offset = 0
        while True:
            chunk = gf.logs(job_id, offset=offset)
            sys.stdout.write(chunk.data)
            if chunk.next_offset == offset:
                break
            offset = chunk.next_offset


def _action(verb: str) -> Any:
    def act(
        job_ids: Annotated[list[int], typer.Argument(help="one or more job ids")],
        reason: Annotated[str, typer.Option(help="recorded in the job's history")] = "",
        as_json: JsonOpt = False,
    ) -> None:
        with client() as gf:
            done = [getattr(gf, verb)(j, reason) for j in job_ids]
        if as_json:
            _dump(done)
        for job in [] if as_json else done:
            out.print(f"job {job.id}: {_state(job.state)} ({job.state_reason})")

    act.__doc__ = {"cancel": "Cancel jobs (running ones get SIGTERM, then are killed).",
                   "hold": "Keep pending jobs from starting.",
                   "release": "Let held jobs be scheduled again.",
                   "requeue": "Stop running jobs and queue them again (or retry failed ones)."}[verb]
    return act


def usage(
    project: Annotated[str | None, typer.Option("--project", "-p")] = None,
    partner: Annotated[str | None, typer.Option()] = None,
    days: Annotated[float, typer.Option(help="window: the last N days")] = 30,
    guarantees: Annotated[bool, typer.Option(help="show the partners' guarantee ledger")] = False,
    as_json: JsonOpt = False,
) -> None:
    """GPU-hours per project and partner, budgets, or the guarantee ledger."""
    now = datetime.now(UTC)
    since = datetime.fromtimestamp(now.timestamp() - days * 86400, UTC)
    with client() as gf:
        if guarantees:
            ledger = gf.guarantees(partner=partner, since=since, until=now)
            if as_json:
                _dump(ledger)
                return
            _table(f"guarantee ledger, last {days:g} days (GPU-hours)",
                   ["partner", "guarantee", "owed", "delivered", "unmet", "lent", "used"],
                   [(r.partner, r.guarantee_gpus, f"{r.owed_gpu_hours:.1f}",
                     f"{r.delivered_gpu_hours:.1f}", f"{r.unmet_gpu_hours:.1f}",
                     f"{r.lent_gpu_hours:.1f}", f"{r.used_gpu_hours:.1f}") for r in ledger.partners])
            return
        report = gf.usage(project=project, partner=partner, since=since, until=now)
    if as_json:
        _dump(report)
        return
    _table(f"usage, last {days:g} days (GPU-hours)",
           ["project", "partner", "finished", "running", "runs", "budget", "budget used"],
           [(p.project, p.partner, f"{p.finished_gpu_hours:.2f}", f"{p.running_gpu_hours:.2f}",
             p.runs, "-" if p.budget_gpu_hours is None else f"{p.budget_gpu_hours:g}",
             f"{p.budget_used_gpu_hours:.2f}") for p in report.projects])
    _table("per partner", ["partner", "GPU-hours"],
           [(p.partner, f"{p.gpu_hours:.2f}") for p in report.partners])


# --- admin --------------------------------------------------------------------------------


@admin_app.command("tree")
def admin_tree(as_json: JsonOpt = False) -> None:
    """Show partners, programmes and projects with guarantees and limits."""
    with client() as gf:
        rows = [t for kind in ("partner", "programme", "project") for t in gf.tenants(kind)]
    if as_json:
        _dump(rows)
        return
    _table("share tree", ["kind", "name", "parent", "guarantee", "borrow", "lend", "weight", "budget left"],
           [(t.kind, t.name, t.parent, t.guarantee, t.borrow_limit, t.lend_limit, t.weight,
             None if t.budget is None or t.budget.remaining_gpu_hours is None
             else f"{t.budget.remaining_gpu_hours:.1f} h") for t in rows])


@admin_app.command("create")
def admin_create(
    kind: Annotated[str, typer.Argument(help="partner | programme | project")],
    name: Annotated[str, typer.Argument()],
    parent: Annotated[str | None, typer.Option(help="partner of a programme, programme of a project")] = None,
    guarantee: Annotated[int, typer.Option(help="GPUs owed when it has demand")] = 0,
    borrow_limit: Annotated[int | None, typer.Option(help="GPUs above guarantee (default: no limit)")] = None,
    lend_limit: Annotated[int | None, typer.Option(help="idle GPUs others may use (default: all)")] = None,
    weight: Annotated[float, typer.Option()] = 1.0,
    tenant_class: Annotated[str | None, typer.Option("--class", help="startup, sme, industry, …")] = None,
    title: Annotated[str, typer.Option()] = "",
) -> None:
    """Create a partner, programme or project."""
    if kind not in ("partner", "programme", "project"):
        raise UserError(f"kind must be partner, programme or project, not {kind!r}")
    with client() as gf:
        t = gf.create_tenant(kind, name=name, parent=parent, guarantee=guarantee,
                             borrow_limit=borrow_limit, lend_limit=lend_limit, weight=weight,
                             tenant_class=tenant_class, title=title)
    out.print(f"created {t.kind} {t.name} (guarantee {t.guarantee})")


@admin_app.command("budget")
def admin_budget(
    project: Annotated[str, typer.Argument()],
    gpu_hours: Annotated[float, typer.Argument(help="GPU-hours granted")],
    expires: Annotated[datetime | None, typer.Option(help="expiry, e.g. 2026-12-31")] = None,
    reset_used: Annotated[bool, typer.Option(help="count usage from zero again")] = False,
) -> None:
    """Grant a project a budget in GPU-hours."""
    with client() as gf:
        b = gf.set_budget(project, gpu_hours, expires.replace(tzinfo=expires.tzinfo or UTC)
                          if expires else None, reset_used)
    out.print(f"{b.project}: {b.gpu_hours:g} GPU-hours, {b.remaining_gpu_hours:.2f} left")


@admin_app.command("user")
def admin_user(
    name: Annotated[str, typer.Argument()],
    email: Annotated[str, typer.Option()] = "",
    token: Annotated[bool, typer.Option(help="also create a token and print it once")] = True,
) -> None:
    """Create a user (and a token, shown once)."""
    with client() as gf:
        gf.create_user(name, email)
        secret = gf.create_token(name="created by admin", user=name).token if token else None
    out.print(f"created user {name}" + (f"; token (shown once): {secret}" if secret else ""))


@admin_app.command("grant")
def admin_grant(
    user: Annotated[str, typer.Argument()],
    role: Annotated[str, typer.Argument(help="admin | partner-manager | project-lead | member | viewer")],
    tenant: Annotated[str | None, typer.Argument(help="partner, programme or project")] = None,
) -> None:
    """Give a user a role on a tenant (or facility-wide)."""
    with client() as gf:
        m = gf.grant(user, role, tenant)
    out.print(f"granted {m.role} on {m.tenant or 'the facility'} to {m.user} (membership {m.id})")


@admin_app.command("revoke")
def admin_revoke(membership_id: Annotated[int, typer.Argument()]) -> None:
    """Remove a membership (see 'admin members')."""
    with client() as gf:
        gf.revoke_membership(membership_id)
    out.print(f"membership {membership_id} removed")


@admin_app.command("members")
def admin_members(
    user: Annotated[str | None, typer.Option()] = None,
    tenant: Annotated[str | None, typer.Option()] = None,
    as_json: JsonOpt = False,
) -> None:
    """List memberships you may see."""
    with client() as gf:
        rows = gf.memberships(user, tenant)
    if as_json:
        _dump(rows)
        return
    _table("memberships", ["id", "user", "role", "on"],
           [(m.id, m.user, m.role, m.tenant or "facility") for m in rows])


@admin_app.command("token")
def admin_token(
    name: Annotated[str, typer.Option(help="a label")] = "",
    days: Annotated[int | None, typer.Option(help="lifetime in days")] = None,
    user: Annotated[str | None, typer.Option(help="for another user (admins)")] = None,
    revoke: Annotated[int | None, typer.Option(help="revoke this token id instead")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a token (printed once), or revoke one with --revoke ID."""
    with client() as gf:
        if revoke is not None:
            gf.revoke_token(revoke)
            out.print(f"token {revoke} revoked")
            return
        created = gf.create_token(name, days, user)
    if as_json:
        _dump(created)
    else:
        out.print(f"token {created.id} for {created.user}, expires {_when(created.expires_at)}:\n"
                  f"{created.token}\n(shown once: store it now)")


@admin_app.command("audit")
def admin_audit(
    actor: Annotated[str | None, typer.Option()] = None,
    limit: Annotated[int, typer.Option()] = 50,
    as_json: JsonOpt = False,
) -> None:
    """The audit log: who changed what, when."""
    with client() as gf:
        page = gf.audit(actor=actor, limit=limit)
    if as_json:
        _dump(page.items)
        return
    _table("audit log", ["id", "when", "who", "what", "on", "detail"],
           [(e.id, _when(e.at), e.actor, e.action, e.target, json.dumps(e.detail)[:60])
            for e in page.items])


def register(app: typer.Typer) -> None:
    """Add the control-plane commands to the ``gigafactory`` app."""
    app.command()(serve)
    app.command()(login)
    app.command(context_settings={"allow_interspersed_args": False})(submit)
    app.command()(jobs)
    app.command()(show)
    app.command()(logs)
    for verb in ("cancel", "hold", "release", "requeue"):
        app.command(verb)(_action(verb))
    app.command()(usage)
    app.add_typer(admin_app, name="admin")

