"""Turn the user's ``--workload`` text into a :class:`Workload`.

Three forms:

- ``synthetic:jobs=...,load=...`` draws the synthetic workload
  (:mod:`gigafactory.twin.synthetic`) for the given facility;
- ``FORMAT:PATH`` imports a public trace on the fly with the trace importers
  (``gavel:traces/gavel-philly-derived/msr/seed=0``; formats are
  :data:`gigafactory.twin.traces.IMPORTERS`); the importer's notes, skipped and
  adjusted counts become assumptions of the run;
- ``PATH`` reads a canonical trace file (Parquet or CSV).

Errors are one :class:`WorkloadError` line naming the file, row or field.
"""

from __future__ import annotations

from pathlib import Path

from gigafactory.core.facility import Facility
from gigafactory.twin import synthetic
from gigafactory.twin.workload import Workload, WorkloadError, from_frame, from_trace


def resolve_workload(
    text: str, facility: Facility, *, skip_invalid: bool = False, estimates: str = "exact"
) -> Workload:
    """A workload from a synthetic spec, ``FORMAT:PATH`` or a canonical trace path."""
    if synthetic.is_synthetic(text):
        spec = synthetic.parse_spec(text)
        if estimates != "exact" and "estimates=" not in text:
            spec = synthetic.SyntheticSpec(**{**spec.__dict__, "estimates": estimates})
        return synthetic.generate(spec, facility)
    from gigafactory.twin.traces import IMPORTERS, TraceError, import_trace

    fmt, sep, rest = text.partition(":")
    if sep and fmt in IMPORTERS:
        try:
            res = import_trace(fmt, rest, skip_invalid=skip_invalid)
        except TraceError as exc:
            raise WorkloadError(str(exc)) from None
        w = from_frame(res.df, name=f"{fmt}:{Path(rest).name}", skipped=res.skipped, estimates=estimates)
        w.notes.extend(f"import ({fmt}): {n}" for n in res.notes)
        if res.adjusted:
            w.notes.append(
                f"rows adjusted by import rules ({fmt}): "
                + ", ".join(f"{k}: {v}" for k, v in sorted(res.adjusted.items()))
            )
        return w
    if sep and len(fmt) > 1 and not Path(text).exists():
        raise WorkloadError(
            f"unknown workload format {fmt!r} in {text!r}; expected synthetic:..., "
            f"one of {', '.join(IMPORTERS)} as FORMAT:PATH, or a canonical trace file"
        )
    return from_trace(text, skip_invalid=skip_invalid, estimates=estimates)
