"""The canonical workload-trace format, its schema check, and trace files on disk.

A trace is a table with one row per job (a gang of ``gpus`` accelerators):

=====================  ========  ==========================================================
column                 dtype     meaning
=====================  ========  ==========================================================
job_id (required)      string    unique, non-empty
submit_time (req.)     float64   seconds since the trace start, ``>= 0``
gpus (required)        int64     gang size, a whole number ``>= 1``
duration (required)    float64   seconds of running time on the recorded hardware, ``> 0``
tenant (required)      string    who submitted it (a virtual cluster, a user, a project)
accelerator            string    accelerator type wanted, ``<NA>`` for any
priority               string    ``urgent``, ``normal`` or ``preemptible``; ``<NA>`` = normal
checkpoint_interval    float64   seconds between checkpoints, ``> 0``; ``NaN`` = none known
kind                   string    job type (model, application, job class) if the trace has one
recorded_start         float64   when the job really started (trace clock), ``>= submit_time``
recorded_end           float64   when it really ended, ``>= recorded_start``
status                 string    the recorded outcome (completed, failed, killed, running, ...)
=====================  ========  ==========================================================

Files are Parquet (``.parquet``/``.pq``) or CSV (``.csv``, ``.csv.gz``). :func:`read_trace`
always returns every column above in this order (absent optional ones filled with missing
values), followed by any extra columns the file had, sorted by ``submit_time`` then
``job_id``. Row numbers in messages count data rows from 1 (a CSV header is not counted).

The check is vectorised (one boolean mask per rule over the whole table), so it stays fast
for traces of millions of rows; only the few rows that are reported are formatted.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

REQUIRED: tuple[str, ...] = ("job_id", "submit_time", "gpus", "duration", "tenant")
OPTIONAL: tuple[str, ...] = (
    "accelerator",
    "priority",
    "checkpoint_interval",
    "kind",
    "recorded_start",
    "recorded_end",
    "status",
)
COLUMNS: tuple[str, ...] = REQUIRED + OPTIONAL
DTYPES: dict[str, str] = {
    "job_id": "string",
    "submit_time": "float64",
    "gpus": "int64",
    "duration": "float64",
    "tenant": "string",
    "accelerator": "string",
    "priority": "string",
    "checkpoint_interval": "float64",
    "kind": "string",
    "recorded_start": "float64",
    "recorded_end": "float64",
    "status": "string",
}
STRING_COLUMNS: tuple[str, ...] = tuple(c for c in COLUMNS if DTYPES[c] == "string")
PRIORITIES: tuple[str, ...] = ("urgent", "normal", "preemptible")

#: How many bad rows a strict-mode error message spells out.
MAX_REPORTED = 3

# Private columns an importer may add: where each row came from, for messages.
SRC_COLUMN = "_src"
ROW_COLUMN = "_row"


class TraceError(Exception):
    """A trace cannot be read or is not valid. The message is always one line."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.splitlines()))


@dataclass(frozen=True)
class Rule:
    """One schema rule over a whole table: rows where ``mask`` holds break it.

    ``got`` gives the offending value of row ``i`` (by position) for the message; it is
    called only for the few rows that are reported.
    """

    category: str
    mask: np.ndarray
    got: Callable[[int], object] | None = None


@dataclass(frozen=True)
class TraceLoad:
    """A trace read from disk: the canonical table and the rows skipped, by reason."""

    df: pd.DataFrame
    skipped: Counter[str]

    @property
    def n_skipped(self) -> int:
        return sum(self.skipped.values())


@dataclass(frozen=True)
class Verbatim:
    """A value already written for the message: shown as is, not quoted."""

    text: str

    def __str__(self) -> str:
        return self.text


def fmt_value(value: object) -> str:
    """Show a raw value the way a user wrote it: ``-3`` not ``-3.0``, strings quoted."""
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, float | np.floating) and math.isfinite(value) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _as_strings(raw: pd.Series) -> pd.Series:
    """Normalise a text column: ``string`` dtype, whitespace stripped, empty -> missing."""
    if pd.api.types.is_float_dtype(raw.dtype):
        # Whole floats ("7.0" from a column with gaps) become "7".
        s = (raw.astype("Int64") if _all_whole(raw) else raw).astype("string")
    else:
        s = raw.astype("string")
    s = s.str.strip()
    return s.mask(s == "")


def _all_whole(raw: pd.Series) -> bool:
    vals = raw.to_numpy(dtype="float64", na_value=np.nan)
    if np.isinf(vals).any():
        return False
    finite = vals[np.isfinite(vals)]
    return bool(np.all(finite == np.floor(finite)))


def _as_numbers(raw: pd.Series) -> pd.Series:
    """Coerce to float64; anything that is not a number becomes NaN."""
    if pd.api.types.is_bool_dtype(raw.dtype):
        return pd.Series(np.nan, index=raw.index, dtype="float64")
    if pd.api.types.is_numeric_dtype(raw.dtype):
        return raw.astype("float64")
    return pd.to_numeric(raw, errors="coerce").astype("float64")


def _number_rules(
    name: str,
    raw: pd.Series,
    num: pd.Series,
    *,
    required: bool,
    low: float | None,
    strict: bool = False,
    whole: bool = False,
) -> list[Rule]:
    """Rules for one numeric column: present, a number, finite, whole, above ``low``."""
    raw_na = raw.isna().to_numpy()
    if not pd.api.types.is_numeric_dtype(raw.dtype):
        raw_na = raw_na | (raw.astype("string").str.strip() == "").fillna(True).to_numpy(dtype=bool)
    v = num.to_numpy(dtype="float64")
    got = _getter(raw)
    rules: list[Rule] = []
    if required:
        rules.append(Rule(f"{name} is missing", raw_na))
    rules.append(Rule(f"{name} must be a number", ~raw_na & np.isnan(v), got))
    rules.append(Rule(f"{name} must be finite", np.isinf(v), got))
    if whole:
        with np.errstate(invalid="ignore"):
            rules.append(Rule(f"{name} must be a whole number", np.isfinite(v) & (v != np.floor(v)), got))
    if low is not None:
        with np.errstate(invalid="ignore"):
            below = v <= low if strict else v < low
        op = ">" if strict else ">="
        rules.append(Rule(f"{name} must be {op} {fmt_value(float(low))}", below, got))
    return rules


def _getter(series: pd.Series) -> Callable[[int], object]:
    def got(i: int) -> object:
        return series.iloc[i]

    return got


def _build_rules(df: pd.DataFrame, num: dict[str, pd.Series], text: dict[str, pd.Series]) -> list[Rule]:
    rules: list[Rule] = []
    job_id = text["job_id"]
    rules.append(Rule("job_id is missing", job_id.isna().to_numpy()))
    rules += _number_rules("submit_time", df["submit_time"], num["submit_time"], required=True, low=0.0)
    rules += _number_rules("gpus", df["gpus"], num["gpus"], required=True, low=1.0, whole=True)
    rules += _number_rules("duration", df["duration"], num["duration"], required=True, low=0.0, strict=True)
    rules.append(Rule("tenant is missing", text["tenant"].isna().to_numpy()))
    if "priority" in text:
        pr = text["priority"]
        bad = pr.notna().to_numpy() & ~pr.isin(PRIORITIES).fillna(False).to_numpy(dtype=bool)
        rules.append(Rule(f"priority must be one of {', '.join(PRIORITIES)}", bad, _getter(df["priority"])))
    if "checkpoint_interval" in num:
        rules += _number_rules(
            "checkpoint_interval", df["checkpoint_interval"], num["checkpoint_interval"],
            required=False, low=0.0, strict=True,
        )
    for name in ("recorded_start", "recorded_end"):
        if name in num:
            rules += _number_rules(name, df[name], num[name], required=False, low=None)
    with np.errstate(invalid="ignore"):
        if "recorded_start" in num:
            rs, st = num["recorded_start"], num["submit_time"]
            rules.append(Rule(
                "recorded_start must be >= submit_time",
                (rs < st).to_numpy(dtype=bool, na_value=False),
                lambda i: Verbatim(f"{fmt_value(rs.iloc[i])} < {fmt_value(st.iloc[i])}"),
            ))
        if "recorded_start" in num and "recorded_end" in num:
            rs, re_ = num["recorded_start"], num["recorded_end"]
            rules.append(Rule(
                "recorded_end must be >= recorded_start",
                (re_ < rs).to_numpy(dtype=bool, na_value=False),
                lambda i: Verbatim(f"{fmt_value(re_.iloc[i])} < {fmt_value(rs.iloc[i])}"),
            ))
    return rules


def describe_columns(columns: Sequence[object], limit: int = 12) -> str:
    """A file's column names for a message: the first ``limit``, then how many more."""
    names = [str(c) for c in columns if c not in (SRC_COLUMN, ROW_COLUMN)]
    if not names:
        return "no columns"
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown}, ... {len(names) - limit} more"


def validate(
    df: pd.DataFrame,
    *,
    source: str,
    skip_invalid: bool = False,
    extra_rules: Sequence[Rule] = (),
) -> tuple[pd.DataFrame, Counter[str]]:
    """Check ``df`` against the canonical schema and return it canonical, with skip counts.

    Each bad row is counted once, under the first rule it breaks (``extra_rules`` first:
    importers use them for source-specific problems). Without ``skip_invalid`` any bad
    row raises :class:`TraceError` naming the first few (file, row, reason, value) and the
    total; with it they are dropped and counted by reason. The private ``_src``/``_row``
    columns, when present, name each row's origin in messages and are removed.
    """
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise TraceError(
            f"{source}: missing required column{'s' if len(missing) > 1 else ''} "
            f"{', '.join(missing)} (found: {describe_columns(list(df.columns))})"
        )
    df = df.reset_index(drop=True)
    num = {c: _as_numbers(df[c]) for c in COLUMNS if c in df.columns and DTYPES[c] != "string"}
    text = {c: _as_strings(df[c]) for c in STRING_COLUMNS if c in df.columns}
    if "priority" in text:
        text["priority"] = text["priority"].str.lower()
    rules = list(extra_rules) + _build_rules(df, num, text)

    first_rule = np.full(len(df), -1, dtype=np.int64)
    for k, rule in enumerate(rules):
        hit = np.asarray(rule.mask, dtype=bool) & (first_rule < 0)
        first_rule[hit] = k
    # Uniqueness last, among rows valid otherwise: a bad first copy does not doom a good one.
    ok = first_rule < 0
    dup = np.zeros(len(df), dtype=bool)
    dup[ok] = text["job_id"][ok].duplicated(keep="first").to_numpy(dtype=bool)
    rules.append(Rule("job_id must be unique", dup, _getter(text["job_id"])))
    first_rule[dup] = len(rules) - 1
    bad = first_rule >= 0
    skipped: Counter[str] = Counter()
    if bad.any():
        counts = np.bincount(first_rule[bad], minlength=len(rules))
        for k, n in enumerate(counts):
            if n:
                skipped[rules[k].category] += int(n)
        if not skip_invalid:
            raise TraceError(_bad_rows_message(df, rules, first_rule, source))

    out = pd.DataFrame(index=df.index)
    for c in COLUMNS:
        if c in text:
            out[c] = text[c]
        elif c in num:
            out[c] = num[c]
        else:
            out[c] = pd.Series(pd.NA if DTYPES[c] == "string" else np.nan, index=df.index)
    extras = [c for c in df.columns if c not in COLUMNS and c not in (SRC_COLUMN, ROW_COLUMN)]
    for c in extras:
        out[c] = df[c]
    out = out.loc[~bad]
    out = out.astype({c: DTYPES[c] for c in COLUMNS})
    out = out.sort_values(["submit_time", "job_id"], kind="stable", ignore_index=True)
    return out, skipped


def _bad_rows_message(df: pd.DataFrame, rules: Sequence[Rule], first_rule: np.ndarray, source: str) -> str:
    positions = np.flatnonzero(first_rule >= 0)
    parts = []
    last_src = None
    for i in positions[:MAX_REPORTED]:
        rule = rules[first_rule[i]]
        src, row = _where(df, int(i), source)
        where = f"row {row}" if src == last_src else f"{src} row {row}"  # name a file once
        last_src = src
        if rule.got is None:
            parts.append(f"{where}: {rule.category}")
        else:
            parts.append(f"{where}: {rule.category}, got {fmt_value(rule.got(int(i)))}")
    msg = "; ".join(parts)
    total = len(positions)
    if total > 1:
        msg += f" ({total} invalid rows in all"
    else:
        msg += " (1 invalid row"
    return msg + "; skip_invalid / --skip-invalid skips and counts them)"


def _where(df: pd.DataFrame, i: int, source: str) -> tuple[str, int]:
    src = str(df[SRC_COLUMN].iloc[i]) if SRC_COLUMN in df.columns else source
    row = int(df[ROW_COLUMN].iloc[i]) if ROW_COLUMN in df.columns else i + 1
    return src, row


def file_format(path: Path) -> str:
    """``parquet`` or ``csv`` from a trace file's suffix; a TraceError line for anything else."""
    name = path.name.lower()
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if name.endswith((".csv", ".csv.gz")):
        return "csv"
    raise TraceError(
        f"{path}: unknown trace file type {''.join(path.suffixes) or '(no suffix)'!r}; "
        "expected .parquet, .pq, .csv or .csv.gz"
    )


def check_input_file(path: Path) -> None:
    """Raise a one-line :class:`TraceError` unless ``path`` is an existing regular file."""
    if not path.exists():
        raise TraceError(f"{path}: no such file")
    if path.is_dir():
        raise TraceError(f"{path}: is a directory, expected a file")


def read_table(path: Path, *, string_columns: Sequence[str] = ()) -> pd.DataFrame:
    """Read a CSV or Parquet file into a DataFrame; any read failure is one TraceError line."""
    check_input_file(path)
    kind = file_format(path)
    try:
        if kind == "parquet":
            return pd.read_parquet(path)
        return pd.read_csv(path, dtype=dict.fromkeys(string_columns, "string"), low_memory=False)
    except pd.errors.EmptyDataError:
        raise TraceError(f"{path}: the file is empty") from None
    except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TraceError(f"{path}: cannot read as {kind}: {first}") from None


def read_trace(path: str | Path, *, skip_invalid: bool = False) -> TraceLoad:
    """Read a canonical trace (Parquet or CSV, by suffix) and check every row.

    Returns the canonical table sorted by ``submit_time`` then ``job_id`` and the
    number of skipped rows per reason. Without ``skip_invalid`` the first bad row
    raises :class:`TraceError`; with it bad rows are dropped and counted, never silently.
    """
    path = Path(path)
    raw = read_table(path, string_columns=STRING_COLUMNS)
    df, skipped = validate(raw, source=str(path), skip_invalid=skip_invalid)
    return TraceLoad(df=df, skipped=skipped)


def write_trace(df: pd.DataFrame, path: str | Path) -> pd.DataFrame:
    """Check ``df`` (strictly) and write it canonical to ``path`` (.parquet/.pq or .csv).

    The file is written next to its final name and renamed into place, so a failed
    write never leaves half a trace. Returns the canonical table that was written.
    """
    path = Path(path)
    kind = file_format(path)
    out, _ = validate(df, source="trace to write", skip_invalid=False)
    if not path.parent.exists():
        raise TraceError(f"{path}: directory {path.parent} does not exist")
    tmp = path.with_name(f".tmp-{path.name}")  # keeps the suffix: .csv.gz stays gzip
    try:
        if kind == "parquet":
            out.to_parquet(tmp, index=False)
        else:
            out.to_csv(tmp, index=False)
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise TraceError(f"{path}: cannot write: {exc.strerror or exc}") from None
    return out
