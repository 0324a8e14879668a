"""Where the CLI keeps its server URL and token, and Slurm-like duration parsing."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

DEFAULT_URL = "http://127.0.0.1:8000"


@dataclass(frozen=True)
class Credentials:
    url: str
    token: str | None


def credentials_path() -> Path:
    """``$GIGAFACTORY_CREDENTIALS``, else ``~/.config/gigafactory/credentials.json``."""
    env = os.environ.get("GIGAFACTORY_CREDENTIALS")
    if env:
        return Path(env)
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "gigafactory" / "credentials.json"


def load_credentials() -> Credentials:
    """Environment (``GIGAFACTORY_URL``, ``GIGAFACTORY_TOKEN``) over the saved file."""
    saved: dict[str, str] = {}
    path = credentials_path()
    if path.is_file():
        try:
            saved = json.loads(path.read_text())
        except (OSError, ValueError):
            saved = {}
    url = os.environ.get("GIGAFACTORY_URL") or saved.get("url") or DEFAULT_URL
    token = os.environ.get("GIGAFACTORY_TOKEN") or saved.get("token")
    return Credentials(url=url.rstrip("/"), token=token)


def save_credentials(creds: Credentials) -> Path:
    """Write the file readable by its owner only; returns its path."""
    path = credentials_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"url": creds.url, "token": creds.token}, fh)
    os.replace(tmp, path)
    return path


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_PARTS = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


def parse_duration(text: str) -> float:
    """Seconds from ``90s``, ``30m``, ``2h``, ``1h30m``, ``1d``, Slurm's ``MM``,
    ``MM:SS``, ``HH:MM:SS`` and ``D-HH[:MM[:SS]]``. Plain numbers are minutes (as
    in sbatch --time). Raises ValueError with the accepted forms."""
    t = text.strip().lower()
    err = ValueError(
        f"cannot read duration {text!r}; use e.g. 90s, 30m, 2h, 1h30m, 1d, 45 (minutes), "
        "01:30:00 or 1-12:00:00"
    )
    if not t:
        raise err
    if _PARTS.fullmatch(t) or re.fullmatch(r"(\d+(?:\.\d+)?[smhdw])+", t):
        total = sum(float(n) * _UNITS[u] for n, u in _PARTS.findall(t))
    else:
        days = 0.0
        if "-" in t:
            d, _, t = t.partition("-")
            if not d.isdigit():
                raise err
            days = float(d)
            fields = t.split(":")
            units = [3600, 60, 1][: len(fields)]
        else:
            fields = t.split(":")
            units = {1: [60], 2: [60, 1], 3: [3600, 60, 1]}.get(len(fields), [])
        if not units or not all(re.fullmatch(r"\d+(\.\d+)?", f) for f in fields):
            raise err
        total = days * 86400 + sum(float(f) * u for f, u in zip(fields, units, strict=True))
    if total <= 0:
        raise ValueError(f"duration {text!r} must be positive")
    return total


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = round(seconds)
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    if d:
        return f"{d}d{h:02d}h"
    if h:
        return f"{h}h{m:02d}m"
    if m:
        return f"{m}m{s:02d}s"
    return f"{s}s"
