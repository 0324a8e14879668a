"""``GET /v1/facility``: the topology and how many GPUs are in use on each node."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import select

from gigafactory.service.deps import AUTH_ERRORS, Caller, Ctx, Db, ServiceRoute
from gigafactory.service.facility.schemas import AcceleratorOut, FacilityOut, NodeOut
from gigafactory.service.jobs.models import Job

router = APIRouter(route_class=ServiceRoute, prefix="/v1", responses=AUTH_ERRORS)


@router.get("/facility", tags=["facility"])
def read_facility(
    db: Db,
    who: Caller,
    ctx: Ctx,
    nodes: Annotated[bool, Query(description="include one entry per node")] = False,
) -> FacilityOut:
    """The facility every authenticated user may read: size, accelerators, use per node."""
    del who
    fac = ctx.facility
    used = [0] * fac.n_nodes
    for (placement,) in db.execute(select(Job.placement).where(Job.active.is_(True))):
        for part in placement or []:
            idx = int(part.get("index", -1))
            if 0 <= idx < fac.n_nodes:
                used[idx] += len(part.get("devices", []))
    sites = [s.name for s in fac.spec.sites]
    out = FacilityOut(
        name=fac.name,
        total_gpus=fac.total_gpus,
        used_gpus=sum(used),
        n_nodes=fac.n_nodes,
        n_blocks=fac.n_blocks,
        pue=fac.spec.pue,
        cost_per_gpu_hour=fac.spec.cost_per_gpu_hour,
        policy=ctx.settings.policy,
        accelerators=[AcceleratorOut(**a.model_dump()) for a in fac.spec.accelerators],
    )
    if nodes:
        out.nodes = [
            NodeOut(
                index=i,
                name=fac.node_names[i],
                accelerator=fac.accel_names[int(fac.node_accel[i])],
                gpus=int(fac.node_gpus[i]),
                used_gpus=used[i],
                rack=int(fac.node_rack[i]),
                block=int(fac.node_block[i]),
                site=sites[int(fac.node_site[i])],
            )
            for i in range(fac.n_nodes)
        ]
    return out
