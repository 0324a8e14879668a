"""Field types shared by request and response schemas (pure Pydantic, no server imports).

Strings never carry NUL characters (PostgreSQL cannot store them) and numbers are
bounded, so that every value a schema accepts can be stored: bad input is a 422, never
a 500.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
)


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")


def _iso_only(value: Any) -> Any:
    """Parse ISO 8601 text ourselves: numbers are refused, not read as epoch seconds."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _ISO.match(value):
        raise ValueError("expected an ISO 8601 date-time with a timezone, e.g. 2026-03-01T12:00:00Z")
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"not a valid ISO 8601 date-time: {value[:40]!r}") from None


#: An ISO 8601 timestamp with a timezone (numbers are not taken as epoch seconds).
IsoDatetime = Annotated[AwareDatetime, BeforeValidator(_iso_only)]

#: A tenant, user or other object name: short, lowercase, URL-safe.
Name = Annotated[
    str,
    StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9._-]*$"),
]
#: Free text of bounded length without NUL characters.
Text200 = Annotated[str, StringConstraints(max_length=200), AfterValidator(_no_nul)]
Text1k = Annotated[str, StringConstraints(max_length=1024), AfterValidator(_no_nul)]
Arg = Annotated[str, StringConstraints(max_length=4096), AfterValidator(_no_nul)]
#: GPU counts and limits stored in 32-bit columns.
GpuCount = Annotated[int, Field(ge=0, le=1_000_000)]
Seconds = Annotated[float, Field(gt=0, le=366 * 86400.0)]


class Strict(BaseModel):
    """Base of request bodies: unknown fields are errors, floats must be finite."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)


class Out(BaseModel):
    """Base of response bodies: built from ORM rows."""

    model_config = ConfigDict(from_attributes=True)


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    """One page of a keyset-paginated list. Pass ``next_cursor`` back as ``cursor``."""

    items: list[T]
    next_cursor: int | None = None
