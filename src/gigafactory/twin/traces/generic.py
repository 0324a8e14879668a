"""Importer ``csv``: any job table (CSV, or Parquet by suffix), mapped with ``--map`` items.

Each ``--map`` item is one of:

- ``SOURCE=FIELD``: the file's column ``SOURCE`` becomes the canonical ``FIELD``;
- ``SOURCE=FIELD*SCALE``: the same, multiplied by ``SCALE`` (units: ``runtime_min=duration*60``,
  ``submit_ms=submit_time*0.001``, ``nodes=gpus*8``); only for numeric fields;
- ``FIELD:=VALUE``: every job gets the constant ``VALUE`` (``tenant:=lab-a``).

Columns already named like a canonical field are used as they are unless a mapping targets
that field. Time fields (``submit_time``, ``recorded_start``, ``recorded_end``) accept
numbers or date strings (dates become seconds; a scale applies to numbers). As with every
importer, times are rebased so that the earliest submit is time 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from gigafactory.twin.traces.common import (
    ImportOptions,
    ImportResult,
    finish,
    read_source_csv,
    tag_rows,
    time_rule,
    to_seconds,
)
from gigafactory.twin.traces.schema import (
    COLUMNS,
    DTYPES,
    REQUIRED,
    ROW_COLUMN,
    SRC_COLUMN,
    Rule,
    TraceError,
    describe_columns,
    read_table,
)

FORMAT = "csv"
TIME_FIELDS = ("submit_time", "recorded_start", "recorded_end")


@dataclass(frozen=True)
class Mapping:
    """One parsed ``--map`` item."""

    field: str
    source: str | None = None  # a column of the file
    scale: float | None = None
    constant: str | None = None

    def describe(self) -> str:
        if self.source is None:
            return f"{self.field} = {self.constant!r} for every job"
        scaled = f" x {self.scale:g}" if self.scale is not None else ""
        return f"{self.field} = {self.source}{scaled}"


def parse_mapping(items: tuple[str, ...]) -> dict[str, Mapping]:
    """Parse ``--map`` items into one mapping per canonical field (one error line if bad)."""
    out: dict[str, Mapping] = {}
    for item in items:
        if ":=" in item:
            field, constant = (s.strip() for s in item.split(":=", 1))
            m = Mapping(field=field, constant=constant)
        elif "=" in item:
            source, target = (s.strip() for s in item.split("=", 1))
            field, _, scale_text = (s.strip() for s in target.partition("*"))
            scale = None
            if scale_text:
                try:
                    scale = float(scale_text)
                except ValueError:
                    raise TraceError(f"--map {item}: scale {scale_text!r} is not a number") from None
            m = Mapping(field=field, source=source, scale=scale)
        else:
            raise TraceError(f"--map {item}: expected SOURCE=FIELD, SOURCE=FIELD*SCALE or FIELD:=VALUE")
        if m.field not in COLUMNS:
            raise TraceError(f"--map {item}: unknown field {m.field!r}; expected one of {', '.join(COLUMNS)}")
        if m.scale is not None and DTYPES[m.field] == "string":
            raise TraceError(f"--map {item}: {m.field} is text and cannot be scaled")
        if (m.source is not None and not m.source) or (m.source is None and not m.constant):
            raise TraceError(f"--map {item}: empty column name or value")
        if m.field in out:
            raise TraceError(f"--map {item}: {m.field} is mapped twice")
        out[m.field] = m
    return out


def _column(src: pd.DataFrame, m: Mapping, rules: list[Rule]) -> pd.Series:
    """The values of field ``m.field`` from column ``m.source``: times parsed, then scaled."""
    assert m.source is not None
    raw = src[m.source]
    col = raw
    if m.field in TIME_FIELDS:
        col, bad = to_seconds(raw)
        rules.append(time_rule(m.source, raw, bad))
    if m.scale is not None:
        num = pd.to_numeric(col, errors="coerce")

        def got(i: int) -> object:
            return raw.iloc[i]

        bad_num = (num.isna() & col.notna()).to_numpy(dtype=bool)
        rules.append(Rule(f"{m.source} must be a number to scale", bad_num, got))
        col = num * m.scale
    return col


def load(path: Path, opts: ImportOptions) -> ImportResult:
    """Import a job table, mapping its columns with ``opts.mapping``."""
    maps = parse_mapping(opts.mapping)
    text_sources = [m.source for m in maps.values() if m.source and DTYPES[m.field] == "string"]
    text_cols = [*text_sources, *(c for c in COLUMNS if DTYPES[c] == "string")]
    if path.name.lower().endswith((".parquet", ".pq")):
        src = tag_rows(read_table(path), str(path))
    else:
        src = read_source_csv(path, fmt=FORMAT, required=(), string_columns=text_cols)
    for item, m in zip(opts.mapping, maps.values(), strict=True):
        if m.source is not None and m.source not in src.columns:
            found = describe_columns(list(src.columns))
            raise TraceError(f"--map {item}: {path} has no column {m.source!r} (found: {found})")

    df = pd.DataFrame(index=src.index)
    rules: list[Rule] = []
    notes: list[str] = []
    for field in COLUMNS:
        if field in maps:
            m = maps[field]
        elif field in src.columns:
            m = Mapping(field=field, source=field)
        else:
            continue
        df[field] = m.constant if m.source is None else _column(src, m, rules)
        notes.append(m.describe())
    missing = [f for f in REQUIRED if f not in df.columns]
    if missing:
        found = describe_columns(list(src.columns))
        raise TraceError(
            f"{path}: no column for {', '.join(missing)}; name one with --map SOURCE=FIELD "
            f"or give a constant with --map FIELD:=VALUE (found: {found})"
        )
    df[SRC_COLUMN] = src[SRC_COLUMN]
    df[ROW_COLUMN] = src[ROW_COLUMN]
    return finish(df, source=str(path), opts=opts, notes=notes, rules=rules)
