"""HTTP routes for jobs. Thin: parse, call :mod:`.service`, shape the answer."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Header, Path, Query, Response
from fastapi.responses import StreamingResponse

from gigafactory.core.jobs import JobState
from gigafactory.service.common import Name, Page
from gigafactory.service.deps import (
    AUTH_ERRORS,
    CONFLICT,
    NOT_FOUND,
    Authed,
    AuthedAsync,
    Caller,
    Ctx,
    Db,
    Now,
    ServiceRoute,
)
from gigafactory.service.errors import ServiceError
from gigafactory.service.jobs import logs, service
from gigafactory.service.jobs.models import Job
from gigafactory.service.jobs.schemas import JobAction, JobDetail, JobOut, JobSubmit, LogChunk
from gigafactory.service.jobs.service import Submission

router = APIRouter(route_class=ServiceRoute, prefix="/v1", tags=["jobs"], responses=AUTH_ERRORS)
JobId = Annotated[int, Path(ge=1, le=2**62)]
IdemKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9._:-]+$",
        description="retry-safe submission: the same key returns the same job",
    ),
]
NoBody = Annotated[JobAction | None, Body()]


@router.post(
    "/jobs",
    status_code=201,
    response_model=JobOut,
    responses={
        200: {"description": "replay of an earlier submission with the same Idempotency-Key"},
        402: {"description": "the project's budget is exhausted"},
        **CONFLICT,
    },
)
async def submit_job(body: JobSubmit, call: AuthedAsync, idempotency_key: IdemKey = None) -> Response:
    """Submit a gang job. Retries with the same ``Idempotency-Key`` never create two jobs."""
    who, ctx, now = call
    # Group commit: the process's writer thread stores this submission together with
    # whatever else is queued, in one transaction (see jobs.batcher).
    try:
        out, outcome, created = await ctx.submitter.submit(Submission(who, body, idempotency_key, now))
    except ServiceError:
        ctx.metrics.submissions.labels("refused").inc()
        raise
    ctx.metrics.submissions.labels(outcome).inc()
    # Serialised once here (the hot path): FastAPI would validate the model again.
    return Response(
        out.model_dump_json(),
        status_code=201 if created else 200,
        media_type="application/json",
        headers=None if created else {"Idempotent-Replayed": "true"},
    )


@router.get("/jobs", responses=NOT_FOUND)
def list_jobs(
    call: Authed,
    project: Annotated[Name | None, Query()] = None,
    state: Annotated[list[JobState] | None, Query(max_length=9)] = None,
    user: Annotated[Name | None, Query()] = None,
    limit: Annotated[int | None, Query(ge=1, le=1000)] = None,
    cursor: Annotated[int | None, Query(ge=1, le=2**62, description="next_cursor of the last page")] = None,
) -> Page[JobOut]:
    """Jobs the caller may see, newest first, with filters and keyset pagination."""
    settings = call.ctx.settings
    size = min(limit or settings.page_size, settings.max_page_size)
    items, nxt = service.list_jobs(
        call.db, call.who, call.now, limit=size, cursor=cursor, project=project,
        states=[s.value for s in state or []], user=user,
    )
    return Page[JobOut](items=items, next_cursor=nxt)


@router.get("/jobs/{job_id}", responses=NOT_FOUND)
def show_job(job_id: JobId, call: Authed) -> JobDetail:
    """A job with its event history; pending jobs carry an estimated start and a reason."""
    return service.show(call.db, call.who, job_id, call.now)


def _action(name: str, doc: str) -> None:
    fn = getattr(service, name)

    @router.post(f"/jobs/{{job_id}}/{name}", name=f"{name}_job", summary=f"{name.capitalize()} a job",
                 description=doc, responses={**NOT_FOUND, **CONFLICT, 402: {"description": "budget"}})
    def act(job_id: JobId, db: Db, who: Caller, now: Now, body: NoBody = None) -> JobDetail:
        fn(db, who, job_id, body.reason if body else "", now)
        return service.show(db, who, job_id, now)


_action("cancel", "Cancel a job. A running job gets SIGTERM, then is killed after its grace.")
_action("hold", "Keep a pending job from starting until it is released.")
_action("release", "Let a held job be scheduled again.")
_action("requeue", "Stop a running job and queue it again (or retry a failed one); it "
        "resumes from its checkpoint directory.")


@router.get("/jobs/{job_id}/logs", responses=NOT_FOUND)
def job_logs(
    job_id: JobId,
    db: Db,
    who: Caller,
    ctx: Ctx,
    offset: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit: Annotated[int, Query(ge=1, le=1024 * 1024)] = 64 * 1024,
) -> LogChunk:
    """A chunk of the job's output (all attempts), from ``offset``; poll with next_offset."""
    job, _ = service.visible_job(db, who, job_id)
    data, nxt = logs.read_chunk(logs.log_path(ctx.settings, job.id), offset, limit)
    eof = job.state in ("completed", "failed", "cancelled") and not job.active and len(data) < limit
    return LogChunk(job_id=job.id, offset=offset, next_offset=nxt,
                    data=data.decode("utf-8", errors="replace"), eof=eof)


@router.get(
    "/jobs/{job_id}/logs/stream",
    responses={**NOT_FOUND, 200: {"content": {"text/plain": {}}, "description": "log bytes"}},
    response_class=StreamingResponse,
)
def stream_job_logs(
    job_id: JobId,
    db: Db,
    who: Caller,
    ctx: Ctx,
    offset: Annotated[int, Query(ge=0, le=2**62)] = 0,
    timeout: Annotated[float, Query(gt=0, le=3600, description="stop after this many s")] = 300,
) -> StreamingResponse:
    """Stream the job's output as it is written, until the job ends (or ``timeout``)."""
    job, _ = service.visible_job(db, who, job_id)

    def state_of() -> str | None:
        with ctx.sessions() as s:
            row = s.get(Job, job.id)
            return None if row is None else ("running" if row.active else row.state)

    path = logs.log_path(ctx.settings, job.id)
    db.close()  # give the connection back before a long stream (SQLite has only one)
    return StreamingResponse(logs.follow(path, offset, state_of, timeout=timeout),
                             media_type="text/plain; charset=utf-8")
