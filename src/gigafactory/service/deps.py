"""Per-app context and the FastAPI dependencies that hand it to routers.

Everything a request needs (settings, sessions, the facility, the clock) hangs off one
:class:`ServiceContext` stored on ``app.state.ctx``; tests build their own with a fake
clock and executor.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any

import anyio
import anyio.to_thread
from fastapi import Depends, Request
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from gigafactory.core.facility import Facility
from gigafactory.service.auth.access import Principal
from gigafactory.service.auth.cache import AuthCache
from gigafactory.service.auth.service import authenticate, hash_token
from gigafactory.service.db import utcnow
from gigafactory.service.errors import Invalid
from gigafactory.service.settings import Settings


@dataclass
class ServiceContext:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    facility: Facility
    clock: Callable[[], datetime] = utcnow
    metrics: Any = None
    executor: Any = None
    loop: Any = None
    auth_cache: AuthCache = field(default_factory=lambda: AuthCache(0))
    submitter: Any = None  # jobs.batcher.SubmitBatcher (group commit of submissions)
    extras: dict[str, Any] = field(default_factory=dict)


# Cheap dependencies are ``async def`` so that FastAPI runs them on the event loop
# instead of hopping to the thread pool for each one.
async def get_ctx(request: Request) -> ServiceContext:
    ctx: ServiceContext = request.app.state.ctx
    return ctx


def _close(session: Session) -> None:
    session.rollback()
    session.close()


async def get_db(request: Request) -> AsyncIterator[Session]:
    """A session per request. Closing it (which returns the connection to the pool) runs
    in a thread of its own small pool, never waiting for a request thread: with a pool
    smaller than the request threads (SQLite has one connection), requests blocked on
    the pool would otherwise wait for the very teardown that frees the connection."""
    ctx: ServiceContext = request.app.state.ctx
    session = ctx.sessions()
    try:
        yield session
    finally:
        limiter = ctx.extras.get("close_limiter")
        if limiter is None:
            limiter = ctx.extras["close_limiter"] = anyio.CapacityLimiter(4)
        await anyio.to_thread.run_sync(_close, session, limiter=limiter)


async def get_now(request: Request) -> datetime:
    ctx: ServiceContext = request.app.state.ctx
    return ctx.clock()


#: Query parameters that may be repeated (declared as lists by their routes).
REPEATABLE = frozenset({"state"})


async def single_valued_query(request: Request) -> None:
    """Reject a repeated query parameter that is not a list (FastAPI would silently take
    the last one): 422 naming the parameter."""
    seen: set[str] = set()
    for key, _ in request.query_params.multi_items():
        if key in seen and key not in REPEATABLE:
            raise Invalid(["query", key], f"query parameter {key!r} may be given only once")
        seen.add(key)


bearer = HTTPBearer(auto_error=False, description="an API token: 'gf_…'")


def get_principal(
    request: Request,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    db: Annotated[Session, Depends(get_db)],
) -> Principal:
    raw = creds.credentials if creds is not None and creds.scheme.lower() == "bearer" else None
    ctx: ServiceContext = request.app.state.ctx
    principal = authenticate(db, raw, ctx.clock(), ctx.auth_cache)
    request.state.principal = principal
    return principal


@dataclass(frozen=True, slots=True)
class Call:
    """Everything an endpoint needs, resolved by one dependency (fewer to solve on hot
    paths): the session, the caller, the context and the request's time."""

    db: Session
    who: Principal
    ctx: ServiceContext
    now: datetime


def get_call(
    request: Request,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    db: Annotated[Session, Depends(get_db)],
) -> Call:
    ctx: ServiceContext = request.app.state.ctx
    raw = creds.credentials if creds is not None and creds.scheme.lower() == "bearer" else None
    now = ctx.clock()
    return Call(db, authenticate(db, raw, now, ctx.auth_cache), ctx, now)


def _authenticate_in_thread(ctx: ServiceContext, raw: str | None, now: datetime) -> Principal:
    with ctx.sessions() as db:
        return authenticate(db, raw, now, ctx.auth_cache)


async def get_principal_async(
    request: Request,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> tuple[Principal, ServiceContext, datetime]:
    """The caller for async endpoints: a cached token costs no thread and no connection;
    a cache miss reads the database in a worker thread with a session of its own."""
    ctx: ServiceContext = request.app.state.ctx
    raw = creds.credentials if creds is not None and creds.scheme.lower() == "bearer" else None
    now = ctx.clock()
    hit = ctx.auth_cache.get(hash_token(raw), now) if raw else None
    if hit is None:
        hit = await anyio.to_thread.run_sync(_authenticate_in_thread, ctx, raw, now)
    request.state.principal = hit
    return hit, ctx, now


Ctx = Annotated[ServiceContext, Depends(get_ctx)]
Db = Annotated[Session, Depends(get_db)]
Now = Annotated[datetime, Depends(get_now)]
Caller = Annotated[Principal, Depends(get_principal)]
Authed = Annotated[Call, Depends(get_call)]
#: (caller, context, request time) without a session: for async endpoints.
AuthedAsync = Annotated[tuple[Principal, ServiceContext, datetime], Depends(get_principal_async)]

def _release_connection(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a sync endpoint: end its session's transaction before it returns.

    FastAPI serialises a sync endpoint's answer in the thread pool, i.e. after waiting
    for a free thread. A request still holding a pooled connection while it waits can
    deadlock against requests that hold the threads while they wait for a connection.
    Endpoints commit their writes themselves; what is left here is a read transaction.
    """

    @functools.wraps(fn)
    def endpoint(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        finally:
            for value in kwargs.values():
                session = value.db if isinstance(value, Call) else value
                if isinstance(session, Session):
                    session.rollback()

    return endpoint


class ServiceRoute(APIRoute):
    """Route class of every router: sync endpoints give their connection back first."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        if not inspect.iscoroutinefunction(endpoint):
            endpoint = _release_connection(endpoint)
        super().__init__(path, endpoint, **kwargs)


#: Error responses every authenticated endpoint may give (documented in OpenAPI).
AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "missing, invalid, expired or revoked token"},
    403: {"description": "the caller's role does not allow this"},
    422: {"description": "invalid input; detail names the field"},
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "no such object (or not visible)"}}
CONFLICT: dict[int | str, dict[str, Any]] = {409: {"description": "conflicts with the current state"}}
