"""Job logs: the executor appends every attempt's output to one file per job, under the
service's state directory; the API reads it by offset, or streams it while the job runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import anyio.to_thread

from gigafactory.service.jobs.states import FINAL
from gigafactory.service.settings import Settings

CHUNK = 64 * 1024


def log_path(settings: Settings, job_id: int) -> Path:
    return settings.state_dir.absolute() / "logs" / f"{job_id}.log"


def checkpoint_dir(settings: Settings, job_id: int) -> Path:
    return settings.state_dir.absolute() / "checkpoints" / str(job_id)


def read_chunk(path: Path, offset: int, limit: int) -> tuple[bytes, int]:
    """Up to ``limit`` bytes from ``offset``; returns the data and the next offset."""
    try:
        with path.open("rb") as fh:
            fh.seek(offset)
            data = fh.read(limit)
    except FileNotFoundError:
        return b"", offset
    return data, offset + len(data)


async def follow(
    path: Path,
    offset: int,
    state_of: Callable[[], str | None],
    *,
    timeout: float,
    poll: float = 0.5,
) -> AsyncIterator[bytes]:
    """Yield new log bytes as they are written, until the job is final (and everything
    is read), the job disappears, or ``timeout`` seconds pass. Runs on the event loop
    (file reads are small; the state check goes to a thread), so a follower holds no
    request thread while it waits."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        data, offset = read_chunk(path, offset, CHUNK)
        if data:
            yield data
            continue
        state = await anyio.to_thread.run_sync(state_of)
        if state is None or state in FINAL:
            data, offset = read_chunk(path, offset, CHUNK)
            while data:
                yield data
                data, offset = read_chunk(path, offset, CHUNK)
            return
        if loop.time() >= deadline:
            return
        await asyncio.sleep(poll)
