"""A synthetic gigafactory workload, calibrated to public LLM-cluster characterisations.

Spec strings look like ``synthetic:jobs=100000,load=0.9,seed=1,days=7``. Keys:

===========  =========  =====================================================
key          default    meaning
===========  =========  =====================================================
jobs         10000      number of jobs
load         0.9        offered load: GPU-seconds asked / (GPUs × arrival window)
seed         0          seed of NumPy's PCG64 generator (same seed, same jobs)
days         7          arrival window in days
diurnal      0.5        amplitude of the daily arrival cycle (0 = flat, < 1)
finetune     0.03       fraction of the non-pretraining jobs that are fine-tuning
estimates    exact      ``exact`` runtime estimates or ``none`` (plan with walltime)
===========  =========  =====================================================

Calibration (DESIGN.md §5, ``acme_cluster_summary.csv``): in the LLM clusters Seren
and Kalos most GPU jobs are short evaluation/debug runs (median run 122 s and 124 s,
median 1 GPU, 5.7 and 26.8 GPUs per job on average), while a few large pretraining
gangs hold most of the GPU-time. The three job kinds:

============  ===============================  ==========================================  ==========
kind          GPUs (probability)               runtime (lognormal, clipped)                checkpoint
============  ===============================  ==========================================  ==========
eval          1 .55, 2 .10, 4 .15, 8 .20       median 120 s, sigma 1.2, [10 s, 4 h]         none
finetune      8 .30, 16 .20, 32 .20, 64 .15,   median 1.5 h, sigma 0.9, [10 min, 3 days]    every 30 min
              128 .10, 256 .05
pretrain      1024 .30, 2048 .25, 4096 .20,    median 4 days, sigma 0.6, [1 day, 21 days]   every 1 h
              8192 .15, 16384 .10              then scaled to hit the load (below)
============  ===============================  ==========================================  ==========

Gangs are clipped to the largest gang the facility can run, so the generator also
works on small facilities (on ``dev-32`` a "pretraining" job is 32 GPUs).

*How the load is met.* The job count and the window fix the arrival rate, so the
load is met through job sizes: the small jobs (eval and fine-tuning) are drawn first;
pretraining jobs absorb the rest of the target GPU-seconds. Their number is the
remaining work over the mean pretraining job (at least one when any work remains),
and their durations are then multiplied by one common factor so that the offered
load equals the target exactly (the factor is in the workload notes). When the small
jobs alone exceed the target, there is no pretraining and the small jobs' durations
are scaled down instead.

*Arrivals* are a non-homogeneous Poisson process over the window with intensity
proportional to ``1 + diurnal * sin(2π (t − 8 h) / 24 h)`` (peak at 14:00, trough at
02:00), sampled by inverting its integral; the kind of each arrival is independent
of its time. Weekends are not modelled.

*Tenants.* The tree has three partners with guarantees summing to the facility:
``eu`` (40 %: programmes ``eu-startup`` 30 %, ``eu-sme`` 20 %, ``eu-research`` 50 %),
``host`` (20 %: ``host-industry`` 50 %, ``host-research`` 50 %) and ``private``
(40 %: ``private-partner``). Projects have no guarantee and weight 1. Tenant class
of each job, by kind (startup, sme, industry, research, private-partner):
eval .25/.20/.20/.25/.10, finetune .25/.25/.20/.20/.10, pretrain .10/.05/.30/.25/.30.
Within a class a project is chosen with Zipf weights ``1/rank`` (a few heavy users).
Projects per class: startup 24, sme 16, industry 12, research 24 (half EU, half
host), private-partner 4. All jobs have priority ``normal``; pretraining asks for
the fewest network blocks, the others for any placement.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, fields

import numpy as np
import numpy.typing as npt

from gigafactory.core.facility import Facility
from gigafactory.core.jobs import PriorityClass, TopologyWish
from gigafactory.core.shares import TenantKind, TenantSpec
from gigafactory.twin.workload import ESTIMATES, TOPOLOGIES, Workload, WorkloadError

PREFIX = "synthetic"
_KIND_WORDS = {"int": "a whole number", "float": "a number", "str": "a string"}
KINDS: tuple[str, ...] = ("eval", "finetune", "pretrain")
EVAL, FINETUNE, PRETRAIN = 0, 1, 2
CLASSES: tuple[str, ...] = ("startup", "sme", "industry", "research", "private-partner")
PROJECTS_PER_CLASS: dict[str, int] = {
    "startup": 24, "sme": 16, "industry": 12, "research": 24, "private-partner": 4,
}


@dataclass(frozen=True)
class KindModel:
    """Gang sizes, runtime and checkpoint interval of one job kind."""

    sizes: tuple[int, ...]
    size_p: tuple[float, ...]
    median_s: float
    sigma: float
    min_s: float
    max_s: float
    checkpoint_s: float  # NaN: cannot checkpoint
    class_p: tuple[float, ...]  # over CLASSES


MODELS: dict[int, KindModel] = {
    EVAL: KindModel((1, 2, 4, 8), (0.55, 0.10, 0.15, 0.20), 120.0, 1.2, 10.0, 4 * 3600.0,
                    math.nan, (0.25, 0.20, 0.20, 0.25, 0.10)),
    FINETUNE: KindModel((8, 16, 32, 64, 128, 256), (0.30, 0.20, 0.20, 0.15, 0.10, 0.05),
                        1.5 * 3600.0, 0.9, 600.0, 3 * 86400.0, 1800.0,
                        (0.25, 0.25, 0.20, 0.20, 0.10)),
    PRETRAIN: KindModel((1024, 2048, 4096, 8192, 16384), (0.30, 0.25, 0.20, 0.15, 0.10),
                        4 * 86400.0, 0.6, 86400.0, 21 * 86400.0, 3600.0,
                        (0.10, 0.05, 0.30, 0.25, 0.30)),
}

#: (partner, guarantee fraction of the facility, [(programme, fraction of partner, class)])
PARTNERS: tuple[tuple[str, float, tuple[tuple[str, float, str], ...]], ...] = (
    ("eu", 0.4, (("eu-startup", 0.3, "startup"), ("eu-sme", 0.2, "sme"),
                 ("eu-research", 0.5, "research"))),
    ("host", 0.2, (("host-industry", 0.5, "industry"), ("host-research", 0.5, "research"))),
    ("private", 0.4, (("private-partner", 1.0, "private-partner"),)),
)
DAY = 86400.0
PEAK_HOUR = 14.0


@dataclass(frozen=True)
class SyntheticSpec:
    """Parameters of one synthetic workload (see the module docstring)."""

    jobs: int = 10_000
    load: float = 0.9
    seed: int = 0
    days: float = 7.0
    diurnal: float = 0.5
    finetune: float = 0.03
    estimates: str = "exact"

    def __post_init__(self) -> None:
        if self.jobs < 1:
            raise WorkloadError(f"synthetic workload: jobs must be at least 1, got {self.jobs}")
        if not self.load > 0:
            raise WorkloadError(f"synthetic workload: load must be positive, got {self.load}")
        if not self.days > 0:
            raise WorkloadError(f"synthetic workload: days must be positive, got {self.days}")
        if not 0 <= self.diurnal < 1:
            raise WorkloadError(f"synthetic workload: diurnal must be in [0, 1), got {self.diurnal}")
        if not 0 <= self.finetune <= 1:
            raise WorkloadError(f"synthetic workload: finetune must be in [0, 1], got {self.finetune}")
        if self.estimates not in ESTIMATES:
            raise WorkloadError(
                f"synthetic workload: estimates must be one of {', '.join(ESTIMATES)}, "
                f"got {self.estimates!r}"
            )

    @property
    def text(self) -> str:
        return f"{PREFIX}:" + ",".join(f"{f.name}={getattr(self, f.name)}" for f in fields(self))


def is_synthetic(text: str) -> bool:
    return text == PREFIX or text.startswith(PREFIX + ":")


def parse_spec(text: str) -> SyntheticSpec:
    """Parse ``synthetic:key=value,...``; one clear error line on a bad key or value."""
    if not is_synthetic(text):
        raise WorkloadError(f"not a synthetic workload spec: {text!r} (expected 'synthetic:...')")
    body = text[len(PREFIX) + 1 :]
    known = {f.name: f.type for f in fields(SyntheticSpec)}
    values: dict[str, object] = {}
    for part in filter(None, (p.strip() for p in body.split(","))):
        key, sep, raw = part.partition("=")
        key = key.strip()
        if not sep:
            raise WorkloadError(f"synthetic workload {text!r}: expected key=value, got {part!r}")
        if key not in known:
            raise WorkloadError(
                f"synthetic workload {text!r}: unknown key {key!r}; expected one of {', '.join(known)}"
            )
        kind = known[key]
        try:
            if kind in ("int", int):
                values[key] = int(float(raw)) if float(raw).is_integer() else int(raw)
            elif kind in ("float", float):
                values[key] = float(raw)
            else:
                values[key] = raw.strip()
        except ValueError:
            raise WorkloadError(
                f"synthetic workload {text!r}: {key} must be {_KIND_WORDS.get(str(kind), str(kind))}, got {raw!r}"
            ) from None
    return SyntheticSpec(**values)  # type: ignore[arg-type]


def arrival_times(rng: np.random.Generator, n: int, days: float, diurnal: float) -> npt.NDArray[np.float64]:
    """``n`` sorted arrival times of the diurnal Poisson process over ``days``."""
    horizon = days * DAY
    # Sorted uniforms in O(n) without a sort: normalised cumulative exponentials.
    gaps = rng.exponential(size=n + 1)
    u = np.cumsum(gaps)[:-1] / gaps.sum()
    if diurnal == 0:
        return np.asarray(u * horizon, dtype=np.float64)
    phase = 2 * math.pi * (PEAK_HOUR - 6.0) / 24.0  # sin peaks 6 h after its zero
    grid = np.linspace(0.0, horizon, max(2, int(horizon / 60.0) + 1))
    w = 2 * math.pi / DAY
    cum = grid - diurnal / w * (np.cos(w * grid - phase) - math.cos(-phase))
    return np.asarray(np.interp(u * cum[-1], cum, grid), dtype=np.float64)


def _draw(rng: np.random.Generator, model: KindModel, n: int, max_gang: int) -> tuple[
    npt.NDArray[np.int64], npt.NDArray[np.float64]
]:
    gpus = rng.choice(np.array(model.sizes, dtype=np.int64), size=n, p=np.array(model.size_p))
    gpus = np.minimum(gpus, max_gang)
    dur = np.exp(rng.normal(math.log(model.median_s), model.sigma, size=n))
    return gpus, np.clip(np.round(dur), model.min_s, model.max_s)


def share_tree(capacity: int) -> list[TenantSpec]:
    """The synthetic share tree (module docstring): partners, programmes, projects."""
    specs: list[TenantSpec] = []
    research_split = {"eu-research": 0, "host-research": 1}
    assigned = 0
    for i, (partner, frac, programmes) in enumerate(PARTNERS):
        g = capacity - assigned if i == len(PARTNERS) - 1 else int(capacity * frac)
        assigned += g
        specs.append(TenantSpec(partner, TenantKind.PARTNER, guarantee=g, weight=frac))
        given = 0
        for k, (prog, pfrac, cls) in enumerate(programmes):
            pg = g - given if k == len(programmes) - 1 else int(g * pfrac)
            given += pg
            specs.append(TenantSpec(prog, TenantKind.PROGRAMME, partner, guarantee=pg,
                                    weight=pfrac, tenant_class=cls))
            n = PROJECTS_PER_CLASS[cls]
            ks = range(n)
            if prog in research_split:  # research projects: half EU, half host state
                ks = range(research_split[prog], n, 2)
            specs.extend(
                TenantSpec(f"{cls}-{j:02d}", TenantKind.PROJECT, prog, tenant_class=cls) for j in ks
            )
    return specs


def _project_names() -> list[str]:
    return [f"{c}-{j:02d}" for c in CLASSES for j in range(PROJECTS_PER_CLASS[c])]


def generate(spec: SyntheticSpec | str, facility: Facility) -> Workload:
    """Draw the workload for ``facility`` (its size sets the load and the gang cap)."""
    if isinstance(spec, str):
        spec = parse_spec(spec)
    rng = np.random.default_rng(spec.seed)
    n = spec.jobs
    capacity = facility.total_gpus
    max_gang = facility.max_gang()
    target = spec.load * capacity * spec.days * DAY
    notes = [
        f"synthetic workload {spec.text} on {facility.name} ({capacity} GPUs)",
        "kinds, sizes, runtimes and tenants drawn as documented in gigafactory.twin.synthetic",
    ]

    submit = arrival_times(rng, n, spec.days, spec.diurnal)
    small_is_ft = rng.random(n) < spec.finetune
    kind = np.where(small_is_ft, FINETUNE, EVAL).astype(np.int64)
    gpus = np.empty(n, dtype=np.int64)
    dur = np.empty(n, dtype=np.float64)
    for k in (EVAL, FINETUNE):
        idx = np.flatnonzero(kind == k)
        gpus[idx], dur[idx] = _draw(rng, MODELS[k], idx.size, max_gang)
    pool_g, pool_d = _draw(rng, MODELS[PRETRAIN], 4096, max_gang)
    mean_pre = float(np.mean(pool_g * pool_d))
    mean_small = float(np.mean(gpus * dur))
    n_pre = 0
    if target > n * mean_small:
        n_pre = min(n, max(1, round((target - n * mean_small) / (mean_pre - mean_small))))
    if n_pre:
        pre = np.sort(rng.choice(n, size=n_pre, replace=False))
        if n_pre > pool_g.size:
            pool_g, pool_d = _draw(rng, MODELS[PRETRAIN], n_pre, max_gang)
        kind[pre] = PRETRAIN
        gpus[pre], dur[pre] = pool_g[:n_pre], pool_d[:n_pre]
        is_pre = kind == PRETRAIN
        small_work = float(np.dot(gpus[~is_pre], dur[~is_pre]))
        pre_work = float(np.dot(gpus[is_pre], dur[is_pre]))
        if target > small_work:
            factor = (target - small_work) / pre_work
            dur[is_pre] *= factor
            notes.append(f"{n_pre} pretraining jobs; their durations scaled by {factor:.3f} to meet the load")
        else:  # rare: the small jobs alone reach the target
            factor = target / (small_work + pre_work)
            dur *= factor
            notes.append(f"all durations scaled by {factor:.3f} to meet the load")
    else:
        factor = target / float(np.dot(gpus, dur))
        dur *= factor
        notes.append(f"no pretraining jobs; small-job durations scaled by {factor:.3f} to meet the load")

    project = np.empty(n, dtype=np.int64)
    offsets = np.cumsum([0] + [PROJECTS_PER_CLASS[c] for c in CLASSES])
    cls = np.empty(n, dtype=np.int64)
    for k, model in MODELS.items():
        idx = np.flatnonzero(kind == k)
        cls[idx] = rng.choice(len(CLASSES), size=idx.size, p=np.array(model.class_p))
    for c, name in enumerate(CLASSES):
        idx = np.flatnonzero(cls == c)
        m = PROJECTS_PER_CLASS[name]
        zipf = 1.0 / np.arange(1, m + 1)
        project[idx] = offsets[c] + rng.choice(m, size=idx.size, p=zipf / zipf.sum())

    ckpt = np.array([MODELS[k].checkpoint_s for k in (EVAL, FINETUNE, PRETRAIN)])[kind]
    topo_pre = TOPOLOGIES.index(TopologyWish.FEWEST_BLOCKS)
    topology = np.where(kind == PRETRAIN, topo_pre, TOPOLOGIES.index(TopologyWish.ANY))
    return Workload(
        name=spec.text,
        submit=submit,
        gpus=gpus,
        duration=dur,
        project=project,
        projects=_project_names(),
        kind=kind,
        kinds=list(KINDS),
        priority=np.full(n, int(PriorityClass.NORMAL), dtype=np.int64),
        checkpoint_interval=ckpt,
        topology=topology.astype(np.int64),
        accelerator=np.full(n, -1, dtype=np.int64),
        tree=share_tree(capacity),
        notes=notes,
        skipped=Counter(),
        estimates=spec.estimates,
        window=(0.0, spec.days * DAY),
    )


def describe(w: Workload) -> dict[str, float]:
    """Figures to compare with the public characterisations (DESIGN.md §5)."""
    gt = w.gpus * w.duration
    out: dict[str, float] = {
        "jobs": float(len(w)),
        "avg_gpus": float(w.gpus.mean()),
        "median_gpus": float(np.median(w.gpus)),
        "median_runtime_s": float(np.median(w.duration)),
        "max_gpus": float(w.gpus.max()),
    }
    for k, name in enumerate(w.kinds):
        sel = w.kind == k
        out[f"share_jobs_{name}"] = float(sel.mean())
        out[f"share_gpu_time_{name}"] = float(gt[sel].sum() / gt.sum())
    return out
