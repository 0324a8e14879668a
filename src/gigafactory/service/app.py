"""The FastAPI application: routers, error handlers, health, metrics and the loop's lifespan.

``create_app()`` builds everything from :class:`Settings`; tests pass a fake clock and
executor. Run it with ``gigafactory serve`` (which migrates the database first), or with
``uvicorn --factory gigafactory.service.app:create_app``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import anyio.to_thread
from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from gigafactory.core.facility import preset
from gigafactory.service import errors
from gigafactory.service.auth.cache import AuthCache
from gigafactory.service.db import make_engine, session_factory, utcnow
from gigafactory.service.deps import ServiceContext, single_valued_query
from gigafactory.service.jobs.batcher import SubmitBatcher
from gigafactory.service.metrics import Metrics
from gigafactory.service.settings import Settings

log = logging.getLogger("gigafactory.service")
VERSION = "1"


def build_context(
    settings: Settings,
    *,
    clock: Callable[[], datetime] = utcnow,
    executor: Any = None,
) -> ServiceContext:
    engine = make_engine(settings.database_url)
    sessions = session_factory(engine)
    ctx = ServiceContext(
        settings=settings,
        engine=engine,
        sessions=sessions,
        facility=preset(settings.facility),
        clock=clock,
        metrics=Metrics(sessions),
        executor=executor,
        auth_cache=AuthCache(settings.auth_cache_ttl),
    )
    ctx.submitter = SubmitBatcher(sessions, lambda: (ctx.settings, ctx.facility),
                                  on_batch=ctx.metrics.submit_batch.observe)
    return ctx


def create_app(
    settings: Settings | None = None,
    *,
    clock: Callable[[], datetime] = utcnow,
    executor: Any = None,
    run_loop: bool | None = None,
) -> FastAPI:
    """The control-plane app. ``run_loop`` overrides ``settings.scheduler_enabled``."""
    settings = settings or Settings()
    ctx = build_context(settings, clock=clock, executor=executor)
    want_loop = settings.scheduler_enabled if run_loop is None else run_loop

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Endpoints are sync (SQLAlchemy): a few threads per process are enough, and
        # fewer threads contend less for the GIL under load.
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.api_threads
        ctx.submitter.open()
        worker = None
        if want_loop:
            from gigafactory.service.scheduler.runner import start_background

            worker = start_background(ctx)
        try:
            yield
        finally:
            if worker is not None:
                worker.stop()
            ctx.submitter.close()
            ctx.engine.dispose()

    app = FastAPI(
        title="gigafactory control plane",
        version=VERSION,
        description=(
            "Submit and follow GPU jobs, manage partners, programmes and projects, read "
            "usage and the guarantee ledger. Authenticate with 'Authorization: Bearer <token>'."
        ),
        lifespan=lifespan,
        dependencies=[Depends(single_valued_query)],
    )
    app.state.ctx = ctx
    errors.install(app)
    _include_routers(app)
    _add_health(app, ctx)
    return app


def _include_routers(app: FastAPI) -> None:
    from gigafactory.service.audit.router import router as audit
    from gigafactory.service.auth.router import router as auth
    from gigafactory.service.facility.router import router as facility
    from gigafactory.service.jobs.router import router as jobs
    from gigafactory.service.tenants.router import router as tenants
    from gigafactory.service.usage.router import router as usage

    for r in (jobs, auth, tenants, facility, usage, audit):  # hot paths first: matched in order
        app.include_router(r)


def _add_health(app: FastAPI, ctx: ServiceContext) -> None:
    @app.get("/healthz", tags=["health"], responses={503: {"description": "database down"}})
    def healthz() -> JSONResponse:
        """Liveness and readiness: the database answers, and what the scheduler last did."""
        try:
            with ctx.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:  # any driver error means "not ready"
            return JSONResponse({"status": "unavailable", "database": str(exc)[:200]}, 503)
        loop = ctx.loop
        body: dict[str, Any] = {"status": "ok", "database": "ok", "version": VERSION}
        if loop is not None:
            body["scheduler"] = loop.health()
        return JSONResponse(body)

    @app.get("/metrics", tags=["health"], response_class=Response)
    def metrics() -> Response:
        """Prometheus metrics (text exposition format)."""
        return Response(generate_latest(ctx.metrics.registry), media_type=CONTENT_TYPE_LATEST)
