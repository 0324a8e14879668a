"""Request and response bodies for jobs (pure Pydantic; the client reuses them)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from gigafactory.core.jobs import JobState, TopologyWish
from gigafactory.service.common import Arg, Name, Out, Seconds, Strict, Text1k, Text200

EnvName = Annotated[str, StringConstraints(min_length=1, max_length=128,
                                           pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
Accelerator = Annotated[str, StringConstraints(min_length=1, max_length=64,
                                               pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
Priority = Literal["urgent", "normal", "preemptible"]
Grace = Annotated[float, Field(gt=0, le=3600)]


class JobSubmit(Strict):
    """A gang of ``gpus`` accelerators running ``command`` for at most ``walltime`` s."""

    project: Name
    gpus: int = Field(ge=1, le=1_000_000)
    command: list[Arg] = Field(min_length=1, max_length=256)
    name: Text200 = ""
    walltime: Seconds = Field(default=24 * 3600.0, description="hard limit, seconds")
    runtime_estimate: Seconds | None = Field(default=None, description="helps backfill")
    accelerator: Accelerator | None = None
    topology: Annotated[TopologyWish, Field(strict=False)] = TopologyWish.ANY
    priority: Priority = "normal"
    checkpointable: bool = False
    checkpoint_interval: Seconds | None = None
    grace_period: Grace | None = Field(
        default=None, description="seconds between SIGTERM and kill on preemption"
    )
    env: dict[EnvName, Arg] = Field(default_factory=dict, max_length=128)
    workdir: Text1k | None = None


class JobAction(Strict):
    reason: Text200 = ""


class JobEventOut(Out):
    id: int
    at: datetime
    from_state: JobState | None
    to_state: JobState
    reason: str
    actor: str


class PlacementPart(Out):
    node: str
    index: int
    devices: list[int]


class JobOut(Out):
    id: int
    name: str
    project: str
    user: str
    gpus: int
    accelerator: str | None
    topology: str
    priority: str
    walltime: float
    runtime_estimate: float | None
    checkpointable: bool
    checkpoint_interval: float | None
    grace_period: float
    command: list[str]
    env: dict[str, str]
    workdir: str | None
    state: JobState
    state_reason: str
    hold_kind: str | None
    submitted_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    estimated_start: datetime | None = Field(description="pending jobs: the scheduler's estimate")
    pending_reason: str | None = Field(description="pending jobs: why it is not running yet")
    placement: list[PlacementPart] | None
    restart_count: int
    checkpoint_dir: str | None
    exit_code: int | None
    gpu_hours: float = Field(description="GPU-hours used so far, all runs")


class JobDetail(JobOut):
    events: list[JobEventOut]


class LogChunk(Out):
    job_id: int
    offset: int
    next_offset: int
    data: str
    eof: bool = Field(description="the job ended and everything was read")

