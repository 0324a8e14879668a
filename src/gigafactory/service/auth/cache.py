"""A short-lived, per-process cache of resolved tokens (the hot path of every request).

An entry lives ``ttl`` seconds (wall clock) and never past its token's expiry. Changes
made through this process (revoking a token, deactivating a user, changing roles)
clear the cache at once; other replicas see them within ``ttl``. ``ttl=0`` disables it.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime

from gigafactory.service.auth.access import Principal


class AuthCache:
    def __init__(self, ttl: float, max_entries: int = 10_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: dict[str, tuple[float, datetime, Principal]] = {}
        self._lock = threading.Lock()

    def get(self, token_hash: str, now: datetime) -> Principal | None:
        if self.ttl <= 0:
            return None
        entry = self._entries.get(token_hash)
        if entry is None:
            return None
        deadline, expires_at, principal = entry
        if time.monotonic() >= deadline or expires_at <= now:
            self._entries.pop(token_hash, None)
            return None
        return principal

    def put(self, token_hash: str, expires_at: datetime, principal: Principal) -> None:
        if self.ttl <= 0:
            return
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[token_hash] = (time.monotonic() + self.ttl, expires_at, principal)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
