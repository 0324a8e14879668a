"""Share trees from files (YAML, TOML or JSON) for the twin's ``--tree`` option.

The file holds a list of tenants (nodes of the share tree; DESIGN.md §3)::

    tenants:
      - {name: eu, kind: partner, guarantee: 40000}
      - {name: eu-startup, kind: programme, parent: eu, guarantee: 12000, tenant_class: startup}
      - {name: alice, parent: eu-startup}            # a project (the default kind)

Fields: ``name`` (required), ``kind`` (partner / programme / project), ``parent``,
``guarantee``, ``borrow_limit``, ``lend_limit`` (whole GPUs), ``weight`` (> 0) and
``tenant_class`` (the group in per-class metrics). Each problem is one
:class:`TreeFileError` line naming the file, the tenant's position and the field.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

from gigafactory.core.shares import ShareTree, TenantKind, TenantSpec
from gigafactory.facility_files import FacilityFileError, read_mapping

FIELDS: tuple[str, ...] = tuple(f.name for f in fields(TenantSpec))
_INTS = ("guarantee", "borrow_limit", "lend_limit")


class TreeFileError(ValueError):
    """A share-tree file cannot be used; the message is one line."""


def _tenant(path: Path, i: int, raw: Any) -> TenantSpec:
    where = f"{path}: tenants[{i}]"
    if not isinstance(raw, dict):
        raise TreeFileError(f"{where}: expected a mapping of tenant fields, got {raw!r}")
    extra = sorted(set(raw) - set(FIELDS))
    if extra:
        raise TreeFileError(f"{where}: unknown field {extra[0]!r}; expected {', '.join(FIELDS)}")
    if not isinstance(raw.get("name"), str) or not raw["name"]:
        raise TreeFileError(f"{where}.name: a non-empty string is required")
    values = dict(raw)
    for key in _INTS:
        v = values.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
            raise TreeFileError(f"{where}.{key}: expected a whole number of GPUs, got {v!r}")
    w = values.get("weight")
    if w is not None and (isinstance(w, bool) or not isinstance(w, int | float)):
        raise TreeFileError(f"{where}.weight: expected a number, got {w!r}")
    if "kind" in values:
        try:
            values["kind"] = TenantKind(str(values["kind"]).lower())
        except ValueError:
            kinds = ", ".join(k.value for k in TenantKind)
            raise TreeFileError(f"{where}.kind: expected one of {kinds}, got {values['kind']!r}") from None
    try:
        return TenantSpec(**values)
    except (TypeError, ValueError) as exc:
        raise TreeFileError(f"{where}: {exc}") from None


def load_tree(path: str | Path) -> list[TenantSpec]:
    """Read and check a share-tree file; the specs build a valid :class:`ShareTree`."""
    path = Path(path)
    try:
        data = read_mapping(path, "share tree")
    except FacilityFileError as exc:
        raise TreeFileError(str(exc)) from None
    raw = data.get("tenants")
    if not isinstance(raw, list) or not raw:
        raise TreeFileError(f"{path}: expected a non-empty list 'tenants' at the top level")
    specs = [_tenant(path, i, t) for i, t in enumerate(raw)]
    try:
        ShareTree(specs)
    except ValueError as exc:
        raise TreeFileError(f"{path}: {exc}") from None
    return specs
