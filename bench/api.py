"""Benchmark the control-plane API: sustained submissions and list/show latency.

    python bench/api.py --db postgresql --clients 4
    python bench/api.py --db sqlite --clients 1 --list-rows 1000000

Starts uvicorn subprocesses (``--workers`` of them, one SO_REUSEPORT socket each on one port) on
127.0.0.1 over a fresh database (a temporary SQLite
file, or a uniquely named PostgreSQL database on 127.0.0.1:5432 that is dropped after),
seeds a share tree and a user, then:

1. **submissions**: ``--clients`` concurrent clients (asyncio, one HTTP connection each)
   send ``--requests`` POST /v1/jobs in total after a warm-up; reports sustained
   submissions/s and p50/p99 latency, ``--repeat`` times (the median run at the top
   level). The scheduler loop is off: this measures the API.
2. **list/show** (``--list-rows`` > 0; default 1,000,000 with one client): bulk-inserts
   job rows straight into the database (not through the API), and at 10k, 100k and 1M
   rows measures GET /v1/jobs (first page, a deep keyset page, filtered by state and by
   project) and GET /v1/jobs/{id}.

Writes ``bench/results/api-<db>-<clients>.json`` (``submits_per_s``, ``p50_ms``,
``p99_ms`` at the top level) and prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from gigafactory.service.auth.roles import Role
from gigafactory.service.bootstrap import create_user_with_token, prepare_database
from gigafactory.service.db import make_engine, session_factory
from gigafactory.service.tenants.models import Tenant

RESULTS = Path(__file__).parent / "results"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
console = Console()


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


class Database:
    """A fresh database for one run; removed afterwards."""

    def __init__(self, kind: str, pg_admin: str) -> None:
        self.kind = kind
        self.pg_admin = pg_admin
        if kind == "sqlite":
            self.dir = tempfile.mkdtemp(prefix="gf-bench-")
            self.url = f"sqlite:///{self.dir}/bench.db"
        else:
            import psycopg

            self.name = f"gf_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
            with psycopg.connect(pg_admin, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{self.name}"')
            host = pg_admin.split("://", 1)[1].rsplit("/", 1)[0]
            self.url = f"postgresql+psycopg://{host}/{self.name}"

    def drop(self) -> None:
        if self.kind == "sqlite":
            import shutil

            shutil.rmtree(self.dir, ignore_errors=True)
        else:
            import psycopg

            with psycopg.connect(self.pg_admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def seed(url: str) -> tuple[str, int, int]:
    """Tree, a member token; returns (token, project id, user id)."""
    engine = make_engine(url)
    prepare_database(engine)
    sessions = session_factory(engine)
    now = datetime.now(UTC)
    with sessions() as db:
        ids: dict[str, int] = {}
        for name, kind, parent, g in [("eu", "partner", None, 16), ("eu-ai", "programme", "eu", 16),
                                      ("alpha", "project", "eu-ai", 8), ("beta", "project", "eu-ai", 8)]:
            t = Tenant(name=name, kind=kind, parent_id=ids.get(parent or ""), guarantee=g,
                       weight=1.0, budget_used_gpu_hours=0.0, created_at=now, updated_at=now,
                       title="")
            db.add(t)
            db.flush()
            ids[name] = t.id
        user, token = create_user_with_token(db, "bench", now,
                                             grants=[(ids["alpha"], Role.MEMBER),
                                                     (ids["beta"], Role.MEMBER)])
        db.commit()
        uid = user.id
    engine.dispose()
    return token, ids["alpha"], uid


def listen_sockets(n: int) -> list[socket.socket]:
    """One listening socket per server process, all on one port with SO_REUSEPORT, so
    the kernel spreads new connections over the processes (as nginx's ``reuseport``;
    with one shared socket, whichever process is in accept() first takes most of the
    connections and the others idle). TCP_NODELAY is set here: accepted sockets inherit
    it, and without it each response waits ~40 ms for a delayed ACK (Nagle)."""
    socks: list[socket.socket] = []
    port = 0
    for _ in range(n):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(("127.0.0.1", port))
        port = sock.getsockname()[1]
        sock.listen(2048)
        sock.set_inheritable(True)
        socks.append(sock)
    return socks


def start_servers(url: str, socks: list[socket.socket]) -> list[subprocess.Popen[bytes]]:
    """One single-process uvicorn per socket, scheduler loop off."""
    env = {**os.environ, "GIGAFACTORY_DATABASE_URL": url, "GIGAFACTORY_SCHEDULER_ENABLED": "false",
           "GIGAFACTORY_STATE_DIR": tempfile.mkdtemp(prefix="gf-bench-state-")}
    procs = [
        subprocess.Popen([sys.executable, "-m", "uvicorn", "--factory", "gigafactory.service.app:create_app",
                          "--fd", str(sock.fileno()), "--log-level", "warning", "--no-access-log"],
                         env=env, pass_fds=[sock.fileno()])
        for sock in socks
    ]
    port = socks[0].getsockname()[1]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                time.sleep(1.0)  # let every process finish starting
                return procs
        except httpx.HTTPError:
            pass
        if any(p.poll() is not None for p in procs):
            break
        time.sleep(0.2)
    for p in procs:
        p.kill()
    raise SystemExit("uvicorn did not become ready within 60 s")


class RawHttp:
    """A minimal keep-alive HTTP/1.1 client (asyncio streams), so that the load
    generator spends far less CPU per request than the server under test (the whole
    bench shares one machine). Requests are pre-encoded; responses must carry a
    Content-Length, which uvicorn always sends for JSON answers."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        assert self.reader is not None and self.writer is not None
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        body = await self.reader.readexactly(length) if length else b""
        return status, body

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def encode_post(path: str, token: str, body: bytes, key: str) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nIdempotency-Key: {key}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


async def submit_phase(port: int, token: str, clients: int, total: int, warmup: int) -> dict[str, Any]:
    body = json.dumps({"project": "alpha", "gpus": 1, "command": ["python", "train.py"],
                       "walltime": 3600}).encode()
    latencies: list[float] = []
    errors: list[str] = []
    counter = {"left": warmup + total}
    run = uuid.uuid4().hex[:8]

    async def worker(idx: int) -> None:
        http = RawHttp("127.0.0.1", port)
        await http.connect()
        try:
            while counter["left"] > 0:
                counter["left"] -= 1
                seq = counter["left"]
                raw = encode_post("/v1/jobs", token, body, f"{run}-{idx}-{seq}")
                t0 = time.perf_counter()
                status, answer = await http.request(raw)
                dt = time.perf_counter() - t0
                if status != 201:
                    errors.append(f"{status} {answer[:200]!r}")
                if seq < total:  # the first `warmup` requests are not measured
                    latencies.append(dt)
        finally:
            await http.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(clients)))
    wall = time.perf_counter() - t0
    if errors:
        console.print(f"[red]{len(errors)} errors[/], first: {errors[0]}")
    measured = len(latencies)
    # Rate over the measured requests: their share of the wall time.
    rate = measured / (wall * measured / (measured + warmup)) if measured else 0.0
    return {"submits_per_s": rate, "p50_ms": pct(latencies, 0.50) * 1000,
            "p99_ms": pct(latencies, 0.99) * 1000, "mean_ms": statistics.fmean(latencies) * 1000,
            "requests": measured, "errors": len(errors), "wall_s": wall}


def bulk_insert(url: str, project_id: int, user_id: int, start: int, count: int) -> None:
    """Insert ``count`` job rows directly (COPY on PostgreSQL, executemany on SQLite)."""
    now = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=1)
    states = ["completed"] * 8 + ["failed", "pending"]
    cols = ["project_id", "user_id", "name", "gpus", "topology", "priority", "walltime",
            "checkpointable", "grace_period", "command", "env", "state", "state_reason",
            "submitted_at", "queued_at", "active", "restart_count", "gpu_seconds"]
    rows = ((project_id, user_id, f"bulk-{i}", 1 + i % 8, "any", "normal", 3600.0, False, 60.0,
             '["python","train.py"]', "{}", states[i % 10], "bulk", now, now, False, 0, 0.0)
            for i in range(start, start + count))
    if url.startswith("postgresql"):
        import psycopg

        libpq = url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(libpq) as conn, conn.cursor().copy(
            f"COPY jobs ({', '.join(cols)}) FROM STDIN"
        ) as copy:
            for row in rows:
                copy.write_row(row)
        # Vacuum now, as autovacuum would soon: measuring while it runs on the same two
        # cores would show the vacuum, not the query.
        with psycopg.connect(libpq, autocommit=True) as conn:
            conn.execute("VACUUM (ANALYZE) jobs")
    else:
        import sqlite3

        lite = sqlite3.connect(url.split("///", 1)[1], timeout=60)
        marks = ", ".join("?" * len(cols))
        lite.executemany(f"INSERT INTO jobs ({', '.join(cols)}) VALUES ({marks})",
                         ((*r[:13], r[13].isoformat(sep=" "), r[14].isoformat(sep=" "), *r[15:])
                          for r in rows))
        lite.commit()
        lite.execute("ANALYZE")
        lite.close()


def timed(http: httpx.Client, path: str, params: Any = None, n: int = 100) -> dict[str, float]:
    lat = []
    for _ in range(n):
        t0 = time.perf_counter()
        r = http.get(path, params=params)
        lat.append(time.perf_counter() - t0)
        if r.status_code != 200:
            raise SystemExit(f"GET {path} failed: {r.status_code} {r.text[:200]}")
    return {"p50_ms": pct(lat, 0.5) * 1000, "p99_ms": pct(lat, 0.99) * 1000}


def list_phase(base: str, token: str, url: str, project_id: int, user_id: int,
               rows: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    inserted = 0
    sizes = [s for s in (10_000, 100_000, 1_000_000) if s < rows] + [rows]
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60) as http:
        for size in sizes:
            t0 = time.perf_counter()
            while inserted < size:
                batch = min(200_000, size - inserted)
                bulk_insert(url, project_id, user_id, inserted, batch)
                inserted += batch
            insert_s = time.perf_counter() - t0
            first = http.get("/v1/jobs", params={"limit": 50}).json()["items"]
            top = first[0]["id"]
            res: dict[str, Any] = {
                "rows": size,
                "insert_s": insert_s,
                "list_first_page": timed(http, "/v1/jobs", {"limit": 50}),
                "list_deep_page": timed(http, "/v1/jobs", {"limit": 50, "cursor": top // 2}),
                "list_by_state": timed(http, "/v1/jobs", {"limit": 50, "state": "pending"}),
                "list_by_project": timed(http, "/v1/jobs", {"limit": 50, "project": "alpha"}),
                "show": timed(http, f"/v1/jobs/{top // 3}"),
            }
            out.append(res)
            console.print(f"  {size:>9,} rows: list p50 {res['list_first_page']['p50_ms']:.1f} ms, "
                          f"deep {res['list_deep_page']['p50_ms']:.1f} ms, show "
                          f"{res['show']['p50_ms']:.1f} ms (insert {insert_s:.0f} s)")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--db", choices=["postgresql", "sqlite"], required=True)
    ap.add_argument("--clients", type=int, default=1)
    ap.add_argument("--requests", type=int, default=None,
                    help="measured submissions (default 1,000 per client, at most 8,000)")
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=3,
                    help="submission runs (new connections each); the median run is reported "
                         "at the top level, every run under 'runs' (the shared box is noisy)")
    ap.add_argument("--workers", type=int, default=None,
                    help="uvicorn processes (default: 2 on PostgreSQL, 1 on SQLite)")
    ap.add_argument("--list-rows", type=int, default=None,
                    help="rows for the list/show phase (default 1,000,000 with one client, else 0)")
    ap.add_argument("--pg-admin", default=os.environ.get("GIGAFACTORY_BENCH_PG", PG_ADMIN))
    args = ap.parse_args()
    total = args.requests or min(8000, 1000 * args.clients)
    workers = args.workers or (1 if args.db == "sqlite" else 2)  # SQLite: one writer process
    list_rows = args.list_rows if args.list_rows is not None else (1_000_000 if args.clients == 1 else 0)

    db = Database(args.db, args.pg_admin)
    procs: list[subprocess.Popen[bytes]] = []
    socks = listen_sockets(workers)
    try:
        token, project_id, user_id = seed(db.url)
        procs = start_servers(db.url, socks)
        port = socks[0].getsockname()[1]
        base = f"http://127.0.0.1:{port}"
        console.print(f"[bold]{args.db}[/]: {args.clients} client(s), {total} submissions, "
                      f"{workers} uvicorn worker(s)")
        runs = [asyncio.run(submit_phase(port, token, args.clients, total, args.warmup))
                for _ in range(max(1, args.repeat))]
        sub = sorted(runs, key=lambda r: r["submits_per_s"])[len(runs) // 2]  # the median run
        listing = list_phase(base, token, db.url, project_id, user_id, list_rows) if list_rows else []
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=30)
        for sock in socks:
            sock.close()
        db.drop()

    result = {
        "db": args.db, "clients": args.clients, "workers": workers, **sub,
        "runs": [{k: round(v, 3) for k, v in r.items()} for r in runs], "list": listing,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"api-{args.db}-{args.clients}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    table = Table(title=f"API submissions ({args.db}, {args.clients} client(s)); * the median run")
    for col in ("run", "submits/s", "p50 ms", "p99 ms", "mean ms", "requests", "errors"):
        table.add_column(col, justify="right")
    for i, r in enumerate(runs, 1):
        table.add_row(f"{i}{' *' if r is sub else ''}", f"{r['submits_per_s']:.0f}", f"{r['p50_ms']:.1f}",
                      f"{r['p99_ms']:.1f}", f"{r['mean_ms']:.1f}", str(r["requests"]), str(r["errors"]))
    console.print(table)
    if listing:
        lt = Table(title="list/show latency, p50 / p99 ms")
        for col in ("rows", "first page", "deep page", "by state", "by project", "show"):
            lt.add_column(col, justify="right")
        for r in listing:
            lt.add_row(f"{r['rows']:,}", *(f"{r[k]['p50_ms']:.1f} / {r[k]['p99_ms']:.1f}" for k in
                                           ("list_first_page", "list_deep_page", "list_by_state",
                                            "list_by_project", "show")))
        console.print(lt)
    console.print(f"wrote {path}")


if __name__ == "__main__":
    main()
