"""Small fluent builders for scheduling-core tests.

    tree = a_tree().partner("eu", 16).project("a", "eu", 16).build()
    job = a_job("j1", "a").gpus(8).runs("1h").urgent().build()
    fac = a_facility().nodes(4).gpus_per_node(8).per_block(2).build()
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from gigafactory.core.facility import Facility, FacilitySpec
from gigafactory.core.jobs import JobSpec, PriorityClass, TopologyWish
from gigafactory.core.shares import ShareTree, TenantKind, TenantSpec

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def secs(text: str | float) -> float:
    if isinstance(text, int | float):
        return float(text)
    return float(text[:-1]) * _UNITS[text[-1]]


class FacilityBuilder:
    def __init__(self) -> None:
        self._pools: list[dict[str, Any]] = []
        self._cur: dict[str, Any] = {"accelerator": "H100", "nodes": 4, "gpus_per_node": 8,
                                     "nodes_per_rack": 1, "nodes_per_block": 2}
        self._sites = 1

    def nodes(self, n: int) -> FacilityBuilder:
        self._cur["nodes"] = n
        return self

    def gpus_per_node(self, n: int) -> FacilityBuilder:
        self._cur["gpus_per_node"] = n
        return self

    def per_block(self, n: int) -> FacilityBuilder:
        self._cur["nodes_per_block"] = n
        self._cur["nodes_per_rack"] = 1
        return self

    def build(self) -> Facility:
        spec = {
            "name": "test",
            "accelerators": [
                {"name": "H100", "memory_gb": 80, "bf16_tflops": 989, "watts": 700},
                {"name": "B200", "memory_gb": 192, "bf16_tflops": 2250, "watts": 1000},
            ],
            "sites": [{"name": "site-a", "pools": [*self._pools, self._cur]}],
        }
        return Facility.from_spec(FacilitySpec.model_validate(spec))


def a_facility() -> FacilityBuilder:
    return FacilityBuilder()


class TreeBuilder:
    def __init__(self) -> None:
        self._t: list[TenantSpec] = []

    def partner(self, name: str, guarantee: int = 0, **kw: Any) -> TreeBuilder:
        self._t.append(TenantSpec(name, TenantKind.PARTNER, guarantee=guarantee, **kw))
        return self

    def programme(self, name: str, parent: str, guarantee: int = 0, **kw: Any) -> TreeBuilder:
        self._t.append(TenantSpec(name, TenantKind.PROGRAMME, parent=parent, guarantee=guarantee, **kw))
        return self

    def project(self, name: str, parent: str | None = None, guarantee: int = 0, **kw: Any) -> TreeBuilder:
        self._t.append(TenantSpec(name, TenantKind.PROJECT, parent=parent, guarantee=guarantee, **kw))
        return self

    def build(self) -> ShareTree:
        return ShareTree(self._t)


def a_tree() -> TreeBuilder:
    return TreeBuilder()


class JobBuilder:
    def __init__(self, job_id: str, project: str) -> None:
        self._j = JobSpec(job_id, project, 1, walltime=3600.0)

    def gpus(self, n: int) -> JobBuilder:
        self._j = replace(self._j, gpus=n)
        return self

    def at(self, t: float | str) -> JobBuilder:
        self._j = replace(self._j, submit_time=secs(t))
        return self

    def runs(self, t: float | str) -> JobBuilder:
        """Walltime limit and estimate both ``t`` (the scheduler plans with it)."""
        self._j = replace(self._j, walltime=secs(t), runtime_estimate=secs(t), oracle_runtime=secs(t))
        return self

    def truly_runs(self, t: float | str) -> JobBuilder:
        self._j = replace(self._j, oracle_runtime=secs(t))
        return self

    def urgent(self) -> JobBuilder:
        self._j = replace(self._j, priority=PriorityClass.URGENT)
        return self

    def preemptible(self) -> JobBuilder:
        self._j = replace(self._j, priority=PriorityClass.PREEMPTIBLE)
        return self

    def topology(self, wish: TopologyWish) -> JobBuilder:
        self._j = replace(self._j, topology=wish)
        return self

    def checkpoints(self, every: float | str) -> JobBuilder:
        self._j = replace(self._j, checkpointable=True, checkpoint_interval=secs(every))
        return self

    def min_runtime(self, t: float | str) -> JobBuilder:
        self._j = replace(self._j, min_runtime=secs(t))
        return self

    def on(self, accel: str) -> JobBuilder:
        self._j = replace(self._j, accelerator=accel)
        return self

    def build(self) -> JobSpec:
        return self._j


def a_job(job_id: str, project: str) -> JobBuilder:
    return JobBuilder(job_id, project)
