"""What every executor with a state directory shares: one lock on the directory (one
executor per directory), file-system-safe names for job ids, and the open/closed
life cycle (``closed``, ``with``, "used after close()")."""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
from pathlib import Path
from typing import IO, Self

from gigafactory.executors.base import ExecutorError

LOCK_FILE = "executor.lock"


def dir_name(job_id: str) -> str:
    """A file-system-safe, collision-free directory name for any job id."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", job_id)[:64]
    return f"{safe}-{hashlib.sha256(job_id.encode()).hexdigest()[:12]}"


def acquire_state_lock(state_dir: Path, who: str) -> IO[str]:
    """Hold the state directory for this process; ``who`` names the executor in the
    error when another one holds it."""
    fh = open(state_dir / LOCK_FILE, "a+", encoding="utf-8")  # noqa: SIM115
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.seek(0)
        owner = fh.read().strip() or "unknown"
        fh.close()
        raise ExecutorError(
            f"{who}: state dir {state_dir} is in use by another executor (pid {owner})"
        ) from None
    fh.seek(0)
    fh.truncate()
    fh.write(str(os.getpid()))
    fh.flush()
    return fh


class StateDirExecutor:
    """The life cycle both executors share. Subclasses set ``_closed`` and implement
    ``close()``; ``WHO`` names them in errors."""

    WHO = "executor"
    _closed: bool

    def close(self) -> None:
        raise NotImplementedError

    @property
    def closed(self) -> bool:
        """True after :meth:`close`."""
        return self._closed

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise ExecutorError(f"{self.WHO}: used after close()")
