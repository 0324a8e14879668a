"""The facility: a declarative spec (validated with Pydantic) and its topology arrays.

Topology levels, from small to large: node → NVLink domain → rack → network block →
site. A site holds *pools*: runs of identical nodes of one accelerator type, cut into
domains, racks and blocks of fixed size (the last ones may be partial).

:class:`Facility` turns a spec into flat NumPy arrays (one entry per node) that the
placement code aggregates per level; nothing here scans accelerators one by one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, model_validator

IntArray = npt.NDArray[np.int64]


class AcceleratorType(BaseModel):
    """One kind of accelerator, with what energy and capacity reports need."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    memory_gb: float = Field(gt=0)
    bf16_tflops: float = Field(gt=0)
    watts: float = Field(gt=0, description="power at full load")


class PoolSpec(BaseModel):
    """A run of identical nodes in one site."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    accelerator: str = Field(min_length=1)
    nodes: int = Field(ge=1)
    gpus_per_node: int = Field(default=8, ge=1, le=256)
    nodes_per_nvlink_domain: int = Field(default=1, ge=1)
    nodes_per_rack: int = Field(default=4, ge=1)
    nodes_per_block: int = Field(default=128, ge=1)

    @model_validator(mode="after")
    def _levels_nest(self) -> PoolSpec:
        if self.nodes_per_rack % self.nodes_per_nvlink_domain:
            raise ValueError(
                f"nodes_per_rack ({self.nodes_per_rack}) must be a multiple of "
                f"nodes_per_nvlink_domain ({self.nodes_per_nvlink_domain})"
            )
        if self.nodes_per_block % self.nodes_per_rack:
            raise ValueError(
                f"nodes_per_block ({self.nodes_per_block}) must be a multiple of "
                f"nodes_per_rack ({self.nodes_per_rack})"
            )
        return self


class SiteSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    pools: list[PoolSpec] = Field(min_length=1)


class FacilitySpec(BaseModel):
    """The whole facility. Load from YAML/TOML with :mod:`gigafactory.facility_files`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    accelerators: list[AcceleratorType] = Field(min_length=1)
    sites: list[SiteSpec] = Field(min_length=1)
    pue: float = Field(default=1.2, ge=1.0, le=3.0, description="power usage effectiveness")
    cost_per_gpu_hour: float = Field(default=2.0, ge=0, description="EUR per GPU-hour")
    energy_price_per_kwh: float = Field(default=0.15, ge=0, description="EUR per kWh")

    @model_validator(mode="after")
    def _names_resolve(self) -> FacilitySpec:
        known = [a.name for a in self.accelerators]
        if len(set(known)) != len(known):
            raise ValueError("accelerator names must be unique")
        sites = [s.name for s in self.sites]
        if len(set(sites)) != len(sites):
            raise ValueError("site names must be unique")
        for si, site in enumerate(self.sites):
            for pi, pool in enumerate(site.pools):
                if pool.accelerator not in known:
                    raise ValueError(
                        f"sites[{si}].pools[{pi}].accelerator: unknown accelerator "
                        f"{pool.accelerator!r}; expected one of {', '.join(known)}"
                    )
        return self

    @property
    def total_gpus(self) -> int:
        return sum(p.nodes * p.gpus_per_node for s in self.sites for p in s.pools)


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True, eq=False)
class Facility:
    """Topology arrays built from a :class:`FacilitySpec`.

    Every node ``i`` has a capacity ``node_gpus[i]`` and belongs to exactly one
    NVLink domain, rack, block and site (``node_domain[i]`` etc.). Blocks never span
    pools, so each block has one accelerator type and one node size.
    """

    spec: FacilitySpec
    node_gpus: IntArray
    node_domain: IntArray
    node_rack: IntArray
    node_block: IntArray
    node_site: IntArray
    node_accel: IntArray
    block_start: IntArray  # first node of each block (nodes of a block are contiguous)
    block_end: IntArray  # one past the last node
    block_site: IntArray
    block_accel: IntArray
    block_node_gpus: IntArray  # GPUs per node in that block
    block_pool: IntArray
    pool_start: IntArray  # node range of each pool (a run of identical nodes in one site)
    pool_end: IntArray
    accel_names: tuple[str, ...]
    node_names: tuple[str, ...]

    @classmethod
    def from_spec(cls, spec: FacilitySpec) -> Facility:
        accel_index = {a.name: i for i, a in enumerate(spec.accelerators)}
        gpus: list[IntArray] = []
        dom: list[IntArray] = []
        rack: list[IntArray] = []
        blk: list[IntArray] = []
        site: list[IntArray] = []
        accel: list[IntArray] = []
        names: list[str] = []
        pools: list[IntArray] = []
        d0 = r0 = b0 = 0
        for si, s in enumerate(spec.sites):
            for pi, p in enumerate(s.pools):
                local = np.arange(p.nodes, dtype=np.int64)
                gpus.append(np.full(p.nodes, p.gpus_per_node, dtype=np.int64))
                dom.append(d0 + local // p.nodes_per_nvlink_domain)
                rack.append(r0 + local // p.nodes_per_rack)
                blk.append(b0 + local // p.nodes_per_block)
                site.append(np.full(p.nodes, si, dtype=np.int64))
                accel.append(np.full(p.nodes, accel_index[p.accelerator], dtype=np.int64))
                pools.append(np.full(p.nodes, len(pools), dtype=np.int64))
                names.extend(f"{s.name}-p{pi}-n{k:05d}" for k in range(p.nodes))
                d0 += _ceil_div(p.nodes, p.nodes_per_nvlink_domain)
                r0 += _ceil_div(p.nodes, p.nodes_per_rack)
                b0 += _ceil_div(p.nodes, p.nodes_per_block)
        node_block = np.concatenate(blk)
        node_gpus = np.concatenate(gpus)
        node_site = np.concatenate(site)
        node_accel = np.concatenate(accel)
        node_pool = np.concatenate(pools)
        pool_ids = np.arange(len(pools))
        starts = np.searchsorted(node_block, np.arange(b0), side="left").astype(np.int64)
        ends = np.searchsorted(node_block, np.arange(b0), side="right").astype(np.int64)
        return cls(
            spec=spec,
            node_gpus=node_gpus,
            node_domain=np.concatenate(dom),
            node_rack=np.concatenate(rack),
            node_block=node_block,
            node_site=node_site,
            node_accel=node_accel,
            block_start=starts,
            block_end=ends,
            block_site=node_site[starts],
            block_accel=node_accel[starts],
            block_node_gpus=node_gpus[starts],
            block_pool=node_pool[starts],
            pool_start=np.searchsorted(node_pool, pool_ids, side="left").astype(np.int64),
            pool_end=np.searchsorted(node_pool, pool_ids, side="right").astype(np.int64),
            accel_names=tuple(a.name for a in spec.accelerators),
            node_names=tuple(names),
        )

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def n_nodes(self) -> int:
        return int(self.node_gpus.shape[0])

    @property
    def n_blocks(self) -> int:
        return int(self.block_start.shape[0])

    @property
    def n_domains(self) -> int:
        return int(self.node_domain[-1]) + 1

    @property
    def n_racks(self) -> int:
        return int(self.node_rack[-1]) + 1

    @property
    def total_gpus(self) -> int:
        return int(self.node_gpus.sum())

    def accel_id(self, name: str | None) -> int | None:
        """Index of an accelerator type; ``None`` means any type."""
        if name is None:
            return None
        try:
            return self.accel_names.index(name)
        except ValueError:
            raise ValueError(
                f"unknown accelerator {name!r}; this facility has {', '.join(self.accel_names)}"
            ) from None

    @property
    def n_pools(self) -> int:
        return int(self.pool_start.shape[0])

    def pool_accel(self, pool: int) -> int:
        return int(self.node_accel[self.pool_start[pool]])

    def max_gang(self, accel: int | None = None, level: str = "pool") -> int:
        """The largest gang that can ever run, for an accelerator type (``None``: any).

        Gangs stay within one pool (identical nodes of one type in one site); ``level``
        ``"block"`` or ``"domain"`` gives the largest block or NVLink domain instead.
        """
        key = {"pool": None, "block": self.node_block, "domain": self.node_domain}[level]
        best = 0
        for p in range(self.n_pools):
            if accel is not None and self.pool_accel(p) != accel:
                continue
            s, e = int(self.pool_start[p]), int(self.pool_end[p])
            if key is None:
                best = max(best, int(self.node_gpus[s:e].sum()))
            else:
                best = max(best, int(np.bincount(key[s:e] - key[s], weights=self.node_gpus[s:e]).max()))
        return best

    def watts_per_gpu(self) -> npt.NDArray[np.float64]:
        """Full-load watts of each node's accelerators (per GPU), for energy reports."""
        w = np.array([a.watts for a in self.spec.accelerators], dtype=np.float64)
        out: npt.NDArray[np.float64] = w[self.node_accel]
        return out


def _preset(name: str, accel: dict[str, Any], nodes: int, **pool: Any) -> dict[str, Any]:
    return {
        "name": name,
        "accelerators": [accel],
        "sites": [{"name": "site-a", "pools": [{"accelerator": accel["name"], "nodes": nodes, **pool}]}],
    }


_H100 = {"name": "H100", "memory_gb": 80, "bf16_tflops": 989, "watts": 700}
_B200 = {"name": "B200", "memory_gb": 192, "bf16_tflops": 2250, "watts": 1000}

#: Built-in facilities (DESIGN.md §2). Values are plain data, validated on use.
PRESETS: dict[str, dict[str, Any]] = {
    "gigafactory-100k": {
        **_preset("gigafactory-100k", _B200, 12_500, nodes_per_rack=4, nodes_per_block=128),
        "pue": 1.15,
        "cost_per_gpu_hour": 2.5,
    },
    "ai-factory-25k": {
        **_preset("ai-factory-25k", _H100, 3_125, nodes_per_rack=4, nodes_per_block=128),
        "pue": 1.25,
        "cost_per_gpu_hour": 2.0,
    },
    "dev-32": _preset("dev-32", _H100, 4, nodes_per_rack=2, nodes_per_block=4),
}


def preset(name: str) -> Facility:
    """Build a preset facility by name (``gigafactory-100k``, ``ai-factory-25k``, ``dev-32``)."""
    try:
        data = PRESETS[name]
    except KeyError:
        raise ValueError(
            f"unknown facility preset {name!r}; expected one of {', '.join(PRESETS)}"
        ) from None
    return Facility.from_spec(FacilitySpec.model_validate(data))
