"""A throw-away PostgreSQL server for the tests (and bench/store_queries.py): `initdb` in a temporary
folder, listening on a unix socket in that folder only (no TCP port), stopped and deleted at the end.

The server binaries come from $WORKBENCH_POSTGRES_BIN, else `initdb` on PATH, else the newest
/usr/lib/postgresql/*/bin (Debian's package). PostgreSQL refuses to run as root: as root the server
runs as the `postgres` user, which owns its folder. Durability is off (fsync, synchronous commit):
the server lives as long as the test session.

    python tests/postgres_server.py     # start one, print a database URL, stop it on ctrl+c
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

USER = "workbench"  # the server's superuser, which the tests connect as


def server_binaries() -> Path | None:
    """The folder holding initdb and pg_ctl, or None when PostgreSQL is not installed."""
    if found := os.environ.get("WORKBENCH_POSTGRES_BIN"):
        return Path(found)
    if initdb := shutil.which("initdb"):
        return Path(initdb).parent
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    return debian[-1].parent if debian else None


def database_name(url: str) -> str:
    """The database a URL of PostgresServer.url() names."""
    return url.split("?")[0].rsplit("/", 1)[-1]


class PostgresServer:
    """A running server; `new_database()` makes an empty database and returns its URL."""

    def __init__(self, binaries: Path) -> None:
        self.binaries = binaries
        self.folder = Path(tempfile.mkdtemp(prefix="workbench-pg-"))
        self.data = self.folder / "data"
        self._names = itertools.count(1)
        self._owner = None
        if os.geteuid() == 0:
            self._owner = pwd.getpwnam("postgres")
            os.chown(self.folder, self._owner.pw_uid, self._owner.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", USER, "--auth=trust", "--no-sync", "-E", "UTF8",
                  "--locale=C")  # fmt: skip
        options = (f"-k {self.folder} -c listen_addresses='' -c fsync=off -c synchronous_commit=off "
                   "-c full_page_writes=off -c max_connections=300")  # fmt: skip
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.folder / "log"), "-o", options, "-w", "start")

    def _run(self, program: str, *args: str) -> None:
        command = [str(self.binaries / program), *args]
        if self._owner is not None:
            command = ["runuser", "-u", self._owner.pw_name, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, cwd=self.folder)
        if done.returncode:
            raise RuntimeError(f"{program} failed ({done.returncode}): {done.stderr or done.stdout}")

    def url(self, database: str) -> str:
        return f"postgresql://{USER}@/{database}?host={self.folder}"

    def execute(self, sql: str, database: str = "postgres") -> None:
        """Run a statement outside a transaction (CREATE DATABASE refuses to run in one)."""
        import psycopg

        with psycopg.connect(f"dbname={database} user={USER} host={self.folder}", autocommit=True) as connection:
            connection.execute(sql)

    def new_database(self, template: str | None = None) -> str:
        """A new database, empty or a copy of the database `template`; its URL."""
        name = f"store_{os.getpid()}_{next(self._names)}"
        self.execute(f"CREATE DATABASE {name}" + (f" TEMPLATE {template}" if template else ""))
        return self.url(name)

    def drop_database(self, url: str) -> None:
        """Drop a database new_database() made, ending the connections still open to it."""
        self.execute(f"DROP DATABASE IF EXISTS {database_name(url)} WITH (FORCE)")

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


if __name__ == "__main__":
    binaries = server_binaries()
    if binaries is None:
        raise SystemExit("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    server = PostgresServer(binaries)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        print(server.new_database(), flush=True)
        print("ctrl+c stops the server and deletes it", file=sys.stderr)
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
