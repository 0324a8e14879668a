"""What every importer shares: options, the result type, reading sources, times, finishing.

Every importer follows the same steps: read the source (one clear error line if the file
is missing or lacks a column), map its columns onto the canonical ones, drop rows that are
out of scope (CPU-only jobs, jobs that never ran) *counting them by reason*, then call
:func:`finish`, which rebases times so the earliest submit is time 0 and runs the
canonical schema check (:func:`~gigafactory.twin.traces.schema.validate`).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from gigafactory.twin.traces.schema import (
    ROW_COLUMN,
    SRC_COLUMN,
    Rule,
    TraceError,
    check_input_file,
    describe_columns,
    validate,
)


@dataclass(frozen=True)
class ImportOptions:
    """Options of ``trace import``; each importer reads the ones that apply to it."""

    skip_invalid: bool = False
    #: ``SOURCE=FIELD[*SCALE]`` or ``FIELD:=VALUE`` items (generic ``csv`` importer only).
    mapping: tuple[str, ...] = ()
    #: Gavel's ``simulation_throughputs.json`` (``gavel`` importer only).
    throughputs: Path | None = None


@dataclass
class ImportResult:
    """A canonical trace and the account of how it was made.

    ``skipped``: rows left out, by reason (out of scope or invalid), never silently.
    ``adjusted``: rows kept but changed by a documented rule (e.g. a fallback), by rule.
    ``notes``: the assumptions used, in words, for the twin's report.
    """

    df: pd.DataFrame
    skipped: Counter[str] = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)
    adjusted: Counter[str] = field(default_factory=Counter)


def tag_rows(df: pd.DataFrame, source: str | pd.Series, first_row: int = 1) -> pd.DataFrame:
    """Add the private origin columns used by error messages (1-based data row numbers)."""
    df[SRC_COLUMN] = source
    df[ROW_COLUMN] = np.arange(first_row, first_row + len(df), dtype=np.int64)
    return df


def read_source_csv(
    path: Path,
    *,
    fmt: str,
    required: Sequence[str],
    string_columns: Sequence[str] = (),
) -> pd.DataFrame:
    """Read a source CSV with a header; missing file/columns are one TraceError line."""
    check_input_file(path)
    try:
        df = pd.read_csv(path, dtype=dict.fromkeys(string_columns, "string"), low_memory=False)
    except pd.errors.EmptyDataError:
        raise TraceError(f"{path}: the file is empty") from None
    except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TraceError(f"{path}: cannot read as CSV: {first}") from None
    require_columns(df, required, path=path, fmt=fmt)
    return tag_rows(df, str(path))


def require_columns(df: pd.DataFrame, required: Sequence[str], *, path: Path, fmt: str) -> None:
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise TraceError(
            f"{path}: missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
            f"needed by format {fmt} (found: {describe_columns(list(df.columns))})"
        )


_EPOCH = pd.Timestamp(0, tz="UTC")


def to_seconds(raw: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Times as float seconds: numbers pass through, date strings become epoch seconds.

    Naive date strings are read as UTC (only differences matter once rebased). The
    literal ``None`` (as the Philly logs write it) and empty cells are missing. Returns
    the seconds and a mask of cells that were present but could not be parsed.
    """
    if pd.api.types.is_numeric_dtype(raw.dtype) and not pd.api.types.is_bool_dtype(raw.dtype):
        return raw.astype("float64"), np.zeros(len(raw), dtype=bool)
    text = raw.astype("string").str.strip()
    text = text.mask(text.isin(["", "None", "null", "NaN", "nan"]))
    secs = pd.to_numeric(text, errors="coerce").astype("float64")
    need = (secs.isna() & text.notna()).to_numpy(dtype=bool)
    if need.any():
        when = pd.to_datetime(text[need], errors="coerce", utc=True, format="mixed")
        secs.loc[need] = (when - _EPOCH).dt.total_seconds().to_numpy(dtype="float64", na_value=np.nan)
    bad = (secs.isna() & text.notna()).to_numpy(dtype=bool)
    return secs, bad


def time_rule(name: str, raw: pd.Series, bad: np.ndarray) -> Rule:
    """The rule for a time column that held something neither a number nor a date."""
    return Rule(f"{name} must be seconds or a date", bad, lambda i: raw.iloc[i])


def finish(
    df: pd.DataFrame,
    *,
    source: str,
    opts: ImportOptions,
    skipped: Counter[str] | None = None,
    notes: list[str] | None = None,
    adjusted: Counter[str] | None = None,
    rules: Sequence[Rule] = (),
) -> ImportResult:
    """Rebase times (earliest submit = 0), check the schema, and assemble the result.

    ``rules`` are importer-specific rules, aligned with ``df``'s rows by position.
    """
    skipped = Counter() if skipped is None else skipped
    notes = [] if notes is None else notes
    df = df.reset_index(drop=True)
    submit = pd.to_numeric(df["submit_time"], errors="coerce") if len(df) else df["submit_time"]
    offset = float(np.nanmin(submit.to_numpy(dtype="float64"))) if submit.notna().any() else 0.0
    if offset:
        for col in ("submit_time", "recorded_start", "recorded_end"):
            if col in df.columns:
                df[col] = pd.to_numeric(df[col], errors="coerce") - offset
        notes.append(f"times rebased: the earliest submit ({_describe_time(offset)}) is time 0")
    out, invalid = validate(df, source=source, skip_invalid=opts.skip_invalid, extra_rules=rules)
    skipped.update(invalid)
    return ImportResult(df=out, skipped=skipped, notes=notes, adjusted=adjusted or Counter())


def _describe_time(seconds: float) -> str:
    if seconds > 1e8:  # an epoch timestamp (after 1973), show it as a date too
        when = dt.datetime.fromtimestamp(seconds, tz=dt.UTC)
        return f"{seconds:.0f} s = {when:%Y-%m-%d %H:%M:%S} UTC"
    return f"{seconds:g} s on the source clock"
