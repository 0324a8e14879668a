"""Per-job supervisor of the local executor, and the small file/``/proc`` helpers
both sides share.

The local executor never runs a job's command directly: it starts this file as a
script (``python -I -S _supervisor.py JOB_DIR HANDSHAKE_FD -- COMMAND...``), in a
session of its own. The supervisor

1. forks once and lets the first process exit, so the supervisor is nobody's
   child (an init process reaps it): the executor never has to ``wait()`` for it,
   and a supervisor started by a crashed instance looks exactly like one started
   by the current instance;
2. starts the command in a *new session* (so its process group id is its pid and
   a signal to the group reaches every process the job started), with the
   environment, working directory and log file it inherited;
3. writes ``proc.json`` (its own and the job's pid and ``/proc`` start time) into
   the job's state directory and sends the same JSON down the handshake pipe;
4. waits for the job, kills whatever the job left behind in its process group,
   appends an end line to the log and writes ``exit.json`` with the exit status.

Because the supervisor outlives a crash of the control plane (it is not in the
control plane's process group, and it ignores SIGTERM/SIGINT/SIGHUP), a new
executor instance still learns the job's exit status from ``exit.json``.
Only the standard library is used here: the script runs isolated (``-I -S``).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

PROC_FILE = "proc.json"
EXIT_FILE = "exit.json"


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as JSON to ``path`` atomically (temp file, fsync, rename)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``, or ``None`` if it is missing or unreadable."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def proc_stat(pid: int) -> tuple[str, int] | None:
    """``(state letter, start time in clock ticks since boot)`` of ``pid`` from
    ``/proc/PID/stat``, or ``None`` if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            raw = fh.read()
    except OSError:
        return None
    # Field 2 (comm) is in parentheses and may itself contain ') '; split after the last one.
    fields = raw[raw.rfind(")") + 2 :].split()
    try:
        return fields[0], int(fields[19])  # field 3 (state) and field 22 (starttime)
    except (IndexError, ValueError):
        return None


def proc_start_time(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot, ``None`` if unknown."""
    stat = proc_stat(pid)
    return None if stat is None else stat[1]


def process_alive(pid: int, start_time: int | None) -> bool:
    """True if ``pid`` runs and is the same process as the one that had
    ``start_time`` (guards against pid reuse). Zombies count as ended. Without
    ``/proc`` (not Linux) this falls back to ``kill(pid, 0)``."""
    if pid <= 0:
        return False
    stat = proc_stat(pid)
    if stat is None:
        if os.path.isdir("/proc/self"):
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    state, started = stat
    if state in ("Z", "X", "x"):
        return False
    return start_time is None or started == start_time


def _log(message: str) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    sys.stderr.write(f"=== gigafactory {stamp}: {message} ===\n")
    sys.stderr.flush()


def describe_returncode(returncode: int) -> str:
    """``exit code 3`` or ``killed by SIGKILL`` (also used by the executors)."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


def _send(fd: int, data: dict[str, Any]) -> None:
    try:
        os.write(fd, (json.dumps(data) + "\n").encode())
    except OSError:
        pass  # the executor gave up waiting; the files still say everything
    finally:
        os.close(fd)


def main(argv: list[str]) -> int:
    """Run as ``_supervisor.py JOB_DIR HANDSHAKE_FD -- COMMAND...``."""
    if len(argv) < 4 or argv[2] != "--":
        sys.stderr.write("usage: _supervisor.py JOB_DIR HANDSHAKE_FD -- COMMAND...\n")
        return 2
    job_dir = Path(argv[0])
    handshake = int(argv[1])
    command = argv[3:]

    if os.fork() != 0:  # detach: the executor reaps this first process at once
        os._exit(0)

    # Survive signals aimed at the terminal or at us by mistake. A Python-level
    # handler (not SIG_IGN) is reset to the default on exec, so the job itself
    # still gets the ordinary SIGTERM behaviour.
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda _signum, _frame: None)

    try:
        child = subprocess.Popen(command, start_new_session=True)
    except OSError as exc:
        code = 126 if isinstance(exc, PermissionError) else 127
        error = f"cannot execute {command[0]!r}: {exc.strerror or exc}"
        _log(error)
        write_json_atomic(job_dir / EXIT_FILE, {"returncode": code, "error": error})
        _send(handshake, {"error": error})
        return 0

    proc = {
        "supervisor_pid": os.getpid(),
        "supervisor_start": proc_start_time(os.getpid()),
        "child_pid": child.pid,
        "child_start": proc_start_time(child.pid),
    }
    write_json_atomic(job_dir / PROC_FILE, proc)
    _send(handshake, proc)

    returncode = child.wait()
    # Clean up what the job left running in its process group.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.pid, signal.SIGKILL)
    _log(f"job ended: {describe_returncode(returncode)}")
    write_json_atomic(job_dir / EXIT_FILE, {"returncode": returncode, "ended_at": time.time()})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
