"""Response bodies for the facility view."""

from __future__ import annotations

from pydantic import BaseModel


class AcceleratorOut(BaseModel):
    name: str
    memory_gb: float
    bf16_tflops: float
    watts: float


class NodeOut(BaseModel):
    index: int
    name: str
    accelerator: str
    gpus: int
    used_gpus: int
    rack: int
    block: int
    site: str


class FacilityOut(BaseModel):
    name: str
    total_gpus: int
    used_gpus: int
    n_nodes: int
    n_blocks: int
    pue: float
    cost_per_gpu_hour: float
    policy: str
    accelerators: list[AcceleratorOut]
    nodes: list[NodeOut] | None = None
