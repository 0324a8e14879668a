"""Checks and lookups done once before a run: the share tree, refused jobs, groups."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from gigafactory.core.facility import Facility
from gigafactory.core.shares import ShareTree, TenantSpec
from gigafactory.twin.config import SimulationError
from gigafactory.twin.workload import UNCLASSIFIED, Workload, tree_from_projects


def resolve_tree(workload: Workload, tree: Sequence[TenantSpec] | None, tree_name: str) -> ShareTree:
    specs = list(tree) if tree is not None else workload.tree or tree_from_projects(workload.projects)
    try:
        share = ShareTree(specs)
    except ValueError as exc:
        raise SimulationError(f"{tree_name}: {exc}") from None
    if tree is not None or workload.tree is not None:
        known = set(share.projects)
        counts = np.bincount(workload.project, minlength=len(workload.projects))
        unknown = [(p, int(c)) for p, c in zip(workload.projects, counts, strict=True) if c and p not in known]
        if unknown:
            shown = ", ".join(f"{p!r} ({c} jobs)" for p, c in unknown[:3])
            more = f" and {len(unknown) - 3} more" if len(unknown) > 3 else ""
            raise SimulationError(
                f"{workload.name}: unknown tenant {shown}{more}: not a project of {tree_name}"
            )
    return share


def check_jobs(workload: Workload, facility: Facility, tree: ShareTree, skip: bool) -> Workload:
    """Refuse (or skip and count) jobs the facility or their tenant's limits can never run."""
    bad = np.zeros(len(workload), dtype=bool)
    why: Counter[str] = Counter()
    for a, name in enumerate(workload.accelerators):
        if name not in facility.accel_names:
            sel = workload.accelerator == a
            if not sel.any():
                continue
            if not skip:
                i = int(np.flatnonzero(sel)[0])
                raise SimulationError(
                    f"{workload.name}: job {workload.job_id(i)}: unknown accelerator {name!r}; "
                    f"facility {facility.name} has {', '.join(facility.accel_names)}"
                )
            bad |= sel
            why["accelerator unknown to the facility"] += int(sel.sum())
    limits: dict[int | None, int] = {None: facility.max_gang()}
    for a, name in enumerate(workload.accelerators):
        if name in facility.accel_names:
            limits[a] = facility.max_gang(facility.accel_id(name))
    cap = np.full(len(workload), limits[None], dtype=np.int64)
    for acc, lim in limits.items():
        if acc is not None:
            cap[workload.accelerator == acc] = lim
    big = (workload.gpus > cap) & ~bad
    if big.any():
        if not skip:
            i = int(np.flatnonzero(big)[0])
            n = int(big.sum())
            raise SimulationError(
                f"{workload.name}: job {workload.job_id(i)} asks for {int(workload.gpus[i])} GPUs, "
                f"more than facility {facility.name} can ever run ({int(cap[i])} in one gang); "
                f"{n} such job{'s' if n > 1 else ''} (--skip-invalid skips and counts them)"
            )
        why["gang bigger than the facility"] += int(big.sum())
        bad |= big
    # the most GPUs each project may ever hold: the smallest cap on its path in the tree
    limit = np.array([min(tree.cap[a] for a in tree.path[tree.index[p]]) if p in tree else np.inf
                      for p in workload.projects])
    over = (workload.gpus > limit[workload.project]) & ~bad
    if over.any():
        i = int(np.flatnonzero(over)[0])
        if not skip:
            n = int(over.sum())
            raise SimulationError(
                f"{workload.name}: job {workload.job_id(i)} asks for {int(workload.gpus[i])} GPUs, more than "
                f"project {workload.projects[int(workload.project[i])]} may ever hold "
                f"({limit[workload.project[i]]:.0f}: guarantee + borrow limit on its path); "
                f"{n} such job{'s' if n > 1 else ''} (--skip-invalid skips and counts them)"
            )
        why["gang bigger than its tenant's limit"] += int(over.sum())
        bad |= over
    if not bad.any():
        return workload
    out = workload.select(~bad)
    out.skipped.update(why)
    out.notes.append("jobs skipped before the run: " + ", ".join(f"{k}: {v}" for k, v in sorted(why.items())))
    return out


def partners_and_classes(tree: ShareTree, projects: list[str]) -> tuple[np.ndarray, list[str], np.ndarray, list[str]]:
    """Per workload project: its partner's index and its tenant class's index."""
    partners = tree.partners
    pidx = {p: k for k, p in enumerate(partners)}
    classes: list[str] = []
    part = np.zeros(len(projects), dtype=np.int64)
    cls = np.zeros(len(projects), dtype=np.int64)
    for k, name in enumerate(projects):
        i = tree.index.get(name)
        if i is None:
            continue
        path = tree.path[i]
        part[k] = pidx[tree.names[path[0]]]
        label = next((tree.specs[a - 1].tenant_class for a in reversed(path) if tree.specs[a - 1].tenant_class), None)
        label = label or UNCLASSIFIED
        if label not in classes:
            classes.append(label)
        cls[k] = classes.index(label)
    return part, partners, cls, classes
