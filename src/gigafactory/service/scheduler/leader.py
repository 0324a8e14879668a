"""One leader at a time: a PostgreSQL advisory lock, or a file lock next to SQLite.

The PostgreSQL lock lives on a dedicated connection: if that connection dies the lock
is gone, so :meth:`still_held` pings it before every cycle.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Protocol

from filelock import FileLock, Timeout
from sqlalchemy import Connection, Engine, text

LOCK_NAME = "gigafactory-scheduler-leader"
#: A stable 63-bit key for pg_try_advisory_lock.
ADVISORY_KEY = int.from_bytes(hashlib.sha256(LOCK_NAME.encode()).digest()[:8], "big") >> 1


class LeaderLock(Protocol):
    def try_acquire(self) -> bool: ...
    def still_held(self) -> bool: ...
    def release(self) -> None: ...


class PgAdvisoryLock:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.conn: Connection | None = None

    def try_acquire(self) -> bool:
        if self.conn is not None:
            return self.still_held()
        conn = self.engine.connect()
        got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": ADVISORY_KEY}).scalar())
        conn.commit()
        if got:
            self.conn = conn
        else:
            conn.close()
        return got

    def still_held(self) -> bool:
        if self.conn is None:
            return False
        try:
            self.conn.execute(text("SELECT 1"))
            self.conn.commit()
            return True
        except Exception:  # the connection is gone, and the lock with it
            self.conn = None
            return False

    def release(self) -> None:
        if self.conn is None:
            return
        try:
            self.conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": ADVISORY_KEY})
            self.conn.commit()
            self.conn.close()
        except Exception:  # closing the connection releases it anyway
            pass
        self.conn = None


class FileLeaderLock:
    """For SQLite: an exclusive lock on ``<database>.leader``."""

    def __init__(self, path: Path) -> None:
        self.lock = FileLock(str(path))

    def try_acquire(self) -> bool:
        try:
            self.lock.acquire(timeout=0)
            return True
        except Timeout:
            return False

    def still_held(self) -> bool:
        return bool(self.lock.is_locked)

    def release(self) -> None:
        if self.lock.is_locked:
            self.lock.release(force=True)


_MEMORY_LOCK = threading.Lock()


class ProcessLock:
    """For in-memory SQLite (tests): one leader per process."""

    def __init__(self) -> None:
        self.held = False

    def try_acquire(self) -> bool:
        if not self.held:
            self.held = _MEMORY_LOCK.acquire(blocking=False)
        return self.held

    def still_held(self) -> bool:
        return self.held

    def release(self) -> None:
        if self.held:
            _MEMORY_LOCK.release()
            self.held = False


def leader_lock(engine: Engine) -> LeaderLock:
    """The right lock for the engine's backend."""
    url = engine.url
    if url.get_backend_name() == "postgresql":
        return PgAdvisoryLock(engine)
    db = url.database
    if not db or db == ":memory:":
        return ProcessLock()
    return FileLeaderLock(Path(db).absolute().with_name(Path(db).name + ".leader"))
