"""Facility specs from presets or files (YAML, TOML or JSON).

``load_facility("dev-32")`` builds a preset; ``load_facility("site.yaml")`` reads a file
whose content is a :class:`~gigafactory.core.facility.FacilitySpec`::

    name: my-factory
    pue: 1.2
    accelerators:
      - {name: H100, memory_gb: 80, bf16_tflops: 989, watts: 700}
    sites:
      - name: site-a
        pools:
          - {accelerator: H100, nodes: 512, gpus_per_node: 8, nodes_per_block: 128}

``load_facility("nodes:openb_node_list_gpu_node.csv")`` builds a facility from a node
list: a CSV with one row per node and columns ``gpu`` (accelerators on the node) and
``model`` (the accelerator type), as in the Alibaba GPU v2023 trace. Identical nodes
(same model and GPU count) form one pool, in order of first appearance, all in one
site; rows with ``gpu = 0`` (CPU-only nodes) are left out. Accelerator figures come
from :data:`KNOWN_ACCELERATORS` (public datasheets; Alibaba's internal ``G2``/``G3``
names are unknown and get V100-class figures); they only affect energy and cost.

Every problem is one :class:`FacilityFileError` line that names the file and the field
(``sites[0].pools[0].nodes``) and says what was expected; never a traceback.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from gigafactory.core.facility import PRESETS, Facility, FacilitySpec, preset

SUFFIXES = {".yaml": "yaml", ".yml": "yaml", ".toml": "toml", ".json": "json"}
NODES_PREFIX = "nodes:"

#: name -> (memory GB, dense bf16/fp16 TFLOPS, watts); used for node lists.
KNOWN_ACCELERATORS: dict[str, tuple[float, float, float]] = {
    "T4": (16, 65, 70), "P100": (16, 19, 250), "V100M16": (16, 125, 300), "V100M32": (32, 125, 300),
    "V100": (32, 125, 300), "A10": (24, 125, 150), "A100": (80, 312, 400), "H100": (80, 989, 700),
    "H200": (141, 989, 700), "B200": (192, 2250, 1000),
}
UNKNOWN_ACCELERATOR: tuple[float, float, float] = (32, 125, 300)


class FacilityFileError(ValueError):
    """A facility preset or file cannot be used; the message is one line."""


def _where(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def validation_message(source: str, exc: ValidationError) -> str:
    """The first error of a Pydantic validation, as ``source: field: message``."""
    errors = exc.errors()
    first = errors[0]
    msg = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    loc = tuple(p for p in first.get("loc", ()) if p not in ("function-after",))
    text = f"{source}: {_where(loc)}: {msg}" if loc else f"{source}: {msg}"
    if first.get("type") not in ("missing", "extra_forbidden") and "input" in first:
        got = first["input"]
        if not isinstance(got, dict | list):
            text += f" (got {got!r})"
    if len(errors) > 1:
        text += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return " ".join(text.splitlines())


def read_mapping(path: Path, what: str) -> dict[str, Any]:
    """Parse a YAML/TOML/JSON file into a mapping; one error line naming the file otherwise."""
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise FacilityFileError(
            f"{path}: unknown {what} file type {path.suffix or '(no suffix)'!r}; "
            "expected .yaml, .yml, .toml or .json"
        )
    if not path.is_file():
        raise FacilityFileError(f"{path}: no such file")
    try:
        text = path.read_text(encoding="utf-8")
        if kind == "yaml":
            data = yaml.safe_load(text)
        elif kind == "toml":
            data = tomllib.loads(text)
        else:
            data = json.loads(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise FacilityFileError(f"{path}: cannot read as yaml: {exc.problem or exc.context}{where}") from None
    except (yaml.YAMLError, tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FacilityFileError(f"{path}: cannot read as {kind}: {first}") from None
    if not isinstance(data, dict):
        raise FacilityFileError(f"{path}: expected a mapping of {what} fields at the top level")
    return data


def node_list_spec(path: Path) -> FacilitySpec:
    """A facility spec from a node-list CSV (see the module docstring)."""
    import pandas as pd

    if not path.is_file():
        raise FacilityFileError(f"{path}: no such file")
    try:
        df = pd.read_csv(path)
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FacilityFileError(f"{path}: cannot read as CSV: {first}") from None
    missing = [c for c in ("gpu", "model") if c not in df.columns]
    if missing:
        raise FacilityFileError(f"{path}: missing column {', '.join(missing)} (need gpu and model)")
    gpus = pd.to_numeric(df["gpu"], errors="coerce")
    bad = gpus.isna() | (gpus < 0) | (gpus != gpus.round())
    if bad.any():
        i = int(bad.to_numpy().nonzero()[0][0])
        raise FacilityFileError(f"{path} row {i + 1}: gpu must be a whole number >= 0, got {df['gpu'].iloc[i]!r}")
    df = df.assign(gpu=gpus.astype(int), model=df["model"].astype(str))[gpus > 0]
    if df.empty:
        raise FacilityFileError(f"{path}: no node has a GPU")
    pools = df.groupby(["model", "gpu"], sort=False).size()
    models = list(dict.fromkeys(df["model"]))
    data = {
        "name": path.stem,
        "accelerators": [
            dict(zip(("memory_gb", "bf16_tflops", "watts"), KNOWN_ACCELERATORS.get(m, UNKNOWN_ACCELERATOR),
                     strict=True)) | {"name": m}
            for m in models
        ],
        "sites": [{"name": "site", "pools": [
            {"accelerator": m, "nodes": int(n), "gpus_per_node": int(g), "nodes_per_rack": 4,
             "nodes_per_block": 128}
            for (m, g), n in pools.items()
        ]}],
    }
    try:
        return FacilitySpec.model_validate(data)
    except ValidationError as exc:
        raise FacilityFileError(validation_message(str(path), exc)) from None


def load_spec(preset_or_path: str | Path) -> FacilitySpec:
    """The spec of a preset (by name), a facility file or a ``nodes:`` node list."""
    name = str(preset_or_path)
    if name in PRESETS:
        return FacilitySpec.model_validate(PRESETS[name])
    if name.startswith(NODES_PREFIX):
        return node_list_spec(Path(name[len(NODES_PREFIX):]))
    path = Path(name)
    if path.suffix.lower() not in SUFFIXES and not path.exists():
        raise FacilityFileError(
            f"unknown facility {name!r}: not a preset ({', '.join(PRESETS)}), "
            "a .yaml/.toml/.json file or nodes:PATH (a node-list CSV)"
        )
    data = read_mapping(path, "facility")
    try:
        return FacilitySpec.model_validate(data)
    except ValidationError as exc:
        raise FacilityFileError(validation_message(str(path), exc)) from None


def load_facility(preset_or_path: str | Path) -> Facility:
    """A :class:`Facility` from a preset name or a facility file (one clear error line)."""
    name = str(preset_or_path)
    if name in PRESETS:
        return preset(name)
    return Facility.from_spec(load_spec(preset_or_path))
