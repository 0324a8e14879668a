"""What ``gigafactory serve`` does before uvicorn starts: settings, migrations, the first
admin token, the demo seed, and a banner with ready-to-paste commands."""

from __future__ import annotations

from fastapi import FastAPI

from gigafactory.service.app import create_app
from gigafactory.service.bootstrap import ensure_admin, prepare_database
from gigafactory.service.settings import Settings


def prepare(*, demo: bool, host: str, port: int, settings: Settings | None = None) -> tuple[FastAPI, str]:
    """Build the app on a migrated database; returns it and the text to print."""
    if settings is None:
        settings = Settings(demo=True) if demo else Settings()
    app = create_app(settings)
    ctx = app.state.ctx
    prepare_database(ctx.engine)
    url = f"http://{host}:{port}"
    lines = [f"gigafactory control plane on {url} (docs: {url}/docs)",
             f"database: {ctx.engine.url.render_as_string(hide_password=True)}",
             f"facility: {ctx.facility.name} ({ctx.facility.total_gpus} GPUs), "
             f"policy {settings.policy}, executor {settings.executor}"]
    if settings.demo:
        from gigafactory.service.demo import seed

        lines += seed(ctx, url)
    else:
        with ctx.sessions() as db:
            token = ensure_admin(db, ctx.clock())
        if token:
            lines += ["", "first start: created user 'admin'. Its token (shown once):", f"  {token}",
                      f"  gigafactory login --url {url} --token {token}"]
    return app, "\n".join(lines)
