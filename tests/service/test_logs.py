"""Following a log file while a job runs: new bytes arrive, the stream ends with the job
(everything read) or at its timeout."""

from __future__ import annotations

import asyncio
from pathlib import Path

from gigafactory.service.jobs.logs import follow, read_chunk


def test_follow_until_the_job_ends(tmp_path: Path) -> None:
    path = tmp_path / "1.log"
    path.write_bytes(b"attempt 0\n")
    states = iter(["running", "running", "completed"])

    def state() -> str:
        s = next(states, "completed")
        if s == "completed":
            with path.open("ab") as fh:
                fh.write(b"done\n")  # written just before the job ended
        else:
            with path.open("ab") as fh:
                fh.write(b"step\n")
        return s

    async def collect() -> bytes:
        return b"".join([c async for c in follow(path, 0, state, timeout=30, poll=0.01)])

    assert asyncio.run(collect()) == b"attempt 0\nstep\nstep\ndone\n"


def test_follow_stops_at_timeout_and_offsets(tmp_path: Path) -> None:
    path = tmp_path / "2.log"

    async def collect() -> bytes:
        return b"".join([c async for c in follow(path, 0, lambda: "pending", timeout=0.05,
                                                 poll=0.01)])

    assert asyncio.run(collect()) == b""  # a pending job: nothing yet, and no hang
    path.write_bytes(b"0123456789")
    assert read_chunk(path, 3, 4) == (b"3456", 7)
    assert read_chunk(tmp_path / "missing.log", 5, 4) == (b"", 5)
