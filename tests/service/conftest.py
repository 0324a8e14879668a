"""Fixtures of the control-plane suite: every API test runs on SQLite and on PostgreSQL.

PostgreSQL: reuse the server on 127.0.0.1:5432 when it answers (or the one named by
``GIGAFACTORY_TEST_PG``, a ``postgresql://user@host:port/db`` URL, or ``throwaway`` to
force a private one); otherwise start a
throwaway server (initdb + pg_ctl as user ``postgres``, since both refuse root) in a
temporary directory on a free port. Each session creates a uniquely named database,
migrates it once and drops it at the end; tests start from truncated tables. If no
server can be had, the PostgreSQL tests fail with a message saying why: never skipped.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from gigafactory.service import migrate
from gigafactory.service.app import create_app
from gigafactory.service.db import Base, import_models, make_engine
from gigafactory.service.settings import Settings

from .helpers import Api

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"


def _answers(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=3):
            return True
    except psycopg.Error:
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Throwaway:
    """A private PostgreSQL server in a temp dir, run as user postgres when we are root."""

    def __init__(self) -> None:
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        initdb = bins[-1] if bins else shutil.which("initdb")
        if not initdb:
            pytest.fail(
                "PostgreSQL tests need a server: none answers on 127.0.0.1:5432 and no "
                "initdb was found (install postgresql, or set GIGAFACTORY_TEST_PG)",
                pytrace=False,
            )
        self.bin = Path(initdb).parent
        self.dir = Path(tempfile.mkdtemp(prefix="gf-pg-"))
        self.port = _free_port()
        self.prefix: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
            self.prefix = ["runuser", "-u", "postgres", "--"]
        data = self.dir / "data"
        self._run([str(self.bin / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
                   "--no-sync"])
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run([str(self.bin / "pg_ctl"), "-D", str(data), "-o", opts, "-w",
                   "-l", str(self.dir / "log"), "start"])
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, cmd: list[str]) -> None:
        res = subprocess.run([*self.prefix, *cmd], capture_output=True, text=True, cwd=self.dir)
        if res.returncode != 0:
            pytest.fail(f"could not start a throwaway PostgreSQL: {' '.join(cmd[:1])} said: "
                        f"{(res.stderr or res.stdout).strip()[-500:]}", pytrace=False)

    def stop(self) -> None:
        subprocess.run([*self.prefix, str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"),
                        "-m", "immediate", "stop"], capture_output=True, cwd=self.dir)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """A libpq URL of a database we can connect to and create databases from."""
    wanted = os.environ.get("GIGAFACTORY_TEST_PG")
    if wanted == "throwaway":  # force a private server even when 5432 answers
        server = _Throwaway()
        try:
            yield server.url
        finally:
            server.stop()
        return
    if wanted:
        if not _answers(wanted):
            pytest.fail(f"GIGAFACTORY_TEST_PG={wanted} does not answer", pytrace=False)
        yield wanted
        return
    if _answers(DEFAULT_PG):
        yield DEFAULT_PG
        return
    server = _Throwaway()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def pg_database(pg_server: str) -> Iterator[str]:
    """A fresh, migrated, uniquely named database for this test session (dropped after)."""
    name = f"gf_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = pg_server.rsplit("/", 1)[0]
    url = f"postgresql+psycopg://{base.split('://', 1)[1]}/{name}"
    engine = make_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    try:
        yield url
    finally:
        with psycopg.connect(pg_server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test (much faster than migrating each)."""
    path = tmp_path_factory.mktemp("sqlite") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate.upgrade(engine)
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.exec_driver_sql("PRAGMA journal_mode=DELETE")
    engine.dispose()
    return path


def _truncate(url: str) -> None:
    import_models()
    names = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    engine = make_engine(url, pool_size=1)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    engine.dispose()


def _clean_url(request: pytest.FixtureRequest, directory: Path) -> str:
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        target = directory / "gigafactory.db"
        shutil.copyfile(template, target)
        return f"sqlite:///{target}"
    url: str = request.getfixturevalue("pg_database")
    _truncate(url)
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A clean, migrated database URL: once on SQLite, once on PostgreSQL."""
    return _clean_url(request, tmp_path)


class FakeClock:
    """A settable UTC clock for the service (tests never read the wall clock)."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()



@pytest.fixture
def api(db_url: str, clock: FakeClock, tmp_path: Path) -> Iterator[Api]:
    """The app on a clean database, with an admin token and a TestClient."""
    settings = Settings(
        database_url=db_url,
        scheduler_enabled=False,
        state_dir=tmp_path / "state",
        facility="dev-32",
    )
    app = create_app(settings, clock=clock, run_loop=False)
    with TestClient(app) as client:
        yield Api(client, clock, app.state.ctx)



@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def api_populated(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """One app per module and database, with the standard tree and a few jobs (for
    fuzzing, where examples may pile up in the database)."""
    directory = tmp_path_factory.mktemp("populated")
    settings = Settings(database_url=_clean_url(request, directory), scheduler_enabled=False,
                        state_dir=directory / "state", facility="dev-32")
    clock = FakeClock()
    app = create_app(settings, clock=clock, run_loop=False)
    with TestClient(app) as client:
        api = Api(client, clock, app.state.ctx)
        api.tree()
        member = api.user("fuzz", ("alpha", "member"))
        for _ in range(3):
            api.job(member, "alpha", 2)
        yield api
