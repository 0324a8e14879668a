"""Workload traces for the digital twin: the canonical format, its check, and importers.

Public API::

    read_trace(path, *, skip_invalid=False) -> TraceLoad      # canonical Parquet/CSV
    write_trace(df, path) -> DataFrame                         # checked, by suffix
    import_trace(fmt, path, *, skip_invalid=False, mapping=(), throughputs=None) -> ImportResult
    IMPORTERS: dict[str, Importer]                             # source formats by name
    trace_stats(df) -> dict                                    # what ``trace stats`` shows

The format is described in :mod:`gigafactory.twin.traces.schema`; each importer's rules
(tenant, GPU and duration choices) in its own module's docstring.
"""

from gigafactory.twin.traces.common import ImportOptions, ImportResult
from gigafactory.twin.traces.registry import IMPORTERS, Importer, import_trace
from gigafactory.twin.traces.schema import (
    COLUMNS,
    OPTIONAL,
    PRIORITIES,
    REQUIRED,
    TraceError,
    TraceLoad,
    file_format,
    read_trace,
    write_trace,
)
from gigafactory.twin.traces.stats import trace_stats

__all__ = [
    "COLUMNS",
    "IMPORTERS",
    "OPTIONAL",
    "PRIORITIES",
    "REQUIRED",
    "ImportOptions",
    "ImportResult",
    "Importer",
    "TraceError",
    "TraceLoad",
    "file_format",
    "import_trace",
    "read_trace",
    "trace_stats",
    "write_trace",
]
