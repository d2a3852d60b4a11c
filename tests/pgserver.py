"""A real PostgreSQL server for the history tests: initdb and pg_ctl into a temporary directory, on a free port of
127.0.0.1, with password (SCRAM) authentication over TCP, stopped and removed when the test session ends.

One server per test process (each xdist worker starts its own the first time a test asks for it), and a new
database per test (``pg_url``), so tests never see each other's runs. Debian's ``postgresql`` package provides the
binaries (``.ci/run`` installs it); PostgreSQL refuses to run as root, so as root the server runs as the
``postgres`` user, in a directory it owns. Where the binaries, that user or psycopg are missing, the tests that need
the server skip with the reason.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote

import pytest

USER = "memtrack"


def find_bindir() -> str | None:
    """The directory holding initdb and pg_ctl: on PATH, or Debian's /usr/lib/postgresql/VERSION/bin (newest)."""
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl", path=os.path.dirname(initdb)):
        return os.path.dirname(os.path.realpath(initdb))
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return os.path.dirname(found[-1]) if found else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PgServer:
    bindir: str
    directory: str
    port: int
    password: str
    as_user: list[str]

    def url(self, dbname: str = "postgres", *, user: str = USER, password: str | None = None) -> str:
        secret = self.password if password is None else password
        return f"postgresql://{user}:{quote(secret, safe='')}@127.0.0.1:{self.port}/{dbname}"

    def _run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.as_user, *argv], capture_output=True, text=True, timeout=120, check=False)

    def start(self) -> None:
        data = os.path.join(self.directory, "data")
        pwfile = os.path.join(self.directory, "pw")
        with open(pwfile, "w") as handle:
            handle.write(self.password)
        done = self._run(os.path.join(self.bindir, "initdb"), "-D", data, "-U", USER, f"--pwfile={pwfile}",
                         "--auth-host=scram-sha-256", "--auth-local=trust", "-E", "UTF8", "--no-sync")
        if done.returncode:
            raise RuntimeError(f"initdb failed: {done.stderr or done.stdout}")
        options = f"-h 127.0.0.1 -p {self.port} -k {self.directory} -F -c max_connections=200"
        done = self._run(os.path.join(self.bindir, "pg_ctl"), "-D", data, "-l", os.path.join(self.directory, "log"),
                         "-w", "-t", "60", "-o", options, "start")
        if done.returncode:
            log = open(os.path.join(self.directory, "log")).read() if os.path.exists(
                os.path.join(self.directory, "log")) else ""
            raise RuntimeError(f"pg_ctl start failed: {done.stderr or done.stdout}\n{log}")

    def stop(self) -> None:
        self._run(os.path.join(self.bindir, "pg_ctl"), "-D", os.path.join(self.directory, "data"), "-m", "immediate",
                  "-w", "stop")
        shutil.rmtree(self.directory, ignore_errors=True)

    def create_database(self) -> str:
        """A new, empty database; its URL."""
        import psycopg

        name = "memtrack_" + secrets.token_hex(6)
        with psycopg.connect(self.url(), autocommit=True) as db:
            db.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def start_server() -> PgServer:
    """A started server, or ``pytest.skip`` with the reason it cannot be had here."""
    pytest.importorskip("psycopg", reason="psycopg 3 is not installed (pip install 'pytest-memtrack[postgresql]')")
    bindir = find_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL's initdb/pg_ctl are not installed (Debian: apt-get install postgresql; .ci/run "
                    "does it)")
    as_user: list[str] = []
    directory = tempfile.mkdtemp(prefix="memtrack-pg-")
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        try:
            account = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(directory, ignore_errors=True)
            pytest.skip("running as root and there is no postgres user to run the PostgreSQL server as")
        runuser = shutil.which("runuser")
        if runuser is None:
            shutil.rmtree(directory, ignore_errors=True)
            pytest.skip("running as root without runuser: the PostgreSQL server cannot be started as postgres")
        os.chown(directory, account.pw_uid, account.pw_gid)
        as_user = [runuser, "-u", "postgres", "--"]
    server = PgServer(bindir, directory, free_port(), secrets.token_urlsafe(12), as_user)
    try:
        server.start()
    except BaseException:
        server.stop()
        raise
    return server


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    server = start_server()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_url(pg_server: PgServer) -> str:
    """The URL of a new, empty database on the session's server."""
    return pg_server.create_database()
