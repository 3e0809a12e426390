"""Opening a store: where it is, its SQLite set-up, schema migrations, and artifact folders.

A store is a folder holding `workbench.sqlite` and `artifacts/` (model files live in
`artifacts/models/<unique name>`). The database may instead be a SQLAlchemy URL (`postgresql://...`
for a store several hosts share). The files of such a store go in a folder laid out like a store
folder: the one `$WORKBENCH_ARTIFACTS` names, else the one recorded in the database when the store
was created (so every host that mounts it at the same path finds it without being told), else
`<user data folder>/url-stores/<backend>-<digest of the URL>`. A `store-id` file there, matching the
database's, shows it is this store's folder: a host where the folder is not mounted is refused
instead of quietly writing models that no other host sees.

Transactions: read through `store.session()`, write through `store.write()`. On SQLite a write
transaction begins IMMEDIATE, taking the write lock up front (waiting up to the busy timeout for
another writer) instead of upgrading a read snapshot later, which SQLite refuses at once with
"database is locked" whenever another process committed in between. So two processes writing at
once take turns and never fail. A write made through `store.session()` has no such guarantee.
PostgreSQL has many writers at once, each locking the rows it changes (store.jobs claims with
`FOR UPDATE SKIP LOCKED`); a write transaction there takes only a shared advisory lock, which
`store.write(exclusive=True)` (the orphan sweep of `store check --fix`) takes exclusively, so that
the sweep never sees a model folder renamed into place whose row is not yet committed.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
import socket
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import cache, partial
from pathlib import Path
from typing import Any, Protocol

import platformdirs
import psutil
from sqlalchemy import Connection, Engine, create_engine, delete, event, insert, inspect, select, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DatabaseError, NoSuchModuleError
from sqlalchemy.pool import NullPool
from sqlmodel import Session

from store.tables import Setting

DB_FILE = "workbench.sqlite"
ARTIFACTS = "artifacts"
TMP = "tmp"  # artifacts/tmp/<pid>.<token>.<host>: folders being written, not yet in place
BUSY_TIMEOUT_S = 30
MIN_FREE_BYTES = 1 << 20  # less free space than this and a store opens read-only: SQLite could not even map its -shm
MIGRATIONS = Path(__file__).with_name("migrations")
REVISION_FILE = re.compile(r"(\d{4})_\w+\.py")  # migrations/versions/0003_job_device_memory.py: revision 0003
# Execution option the "begin" event reads: on SQLite any value begins IMMEDIATE; on PostgreSQL
# "shared" and "exclusive" take WRITERS_LOCK so, and "schema" nothing (_lock_for_migration does).
_IMMEDIATE = "workbench_begin_immediate"
WRITE_SESSION = "workbench_write"  # Session.info key marking sessions from Store.write()
STORE_ID_FILE = "store-id"  # in a URL store's files folder: the id its database records
# PostgreSQL advisory lock keys (any two 64-bit numbers no other program uses on the store's database).
WRITERS_LOCK = 0x776F726B62656E01  # shared by write transactions, exclusive for check --fix's sweep
MIGRATION_LOCK = 0x776F726B62656E02  # one process at a time migrates or records the settings


class StoreError(Exception):
    """What the store cannot do, in one line for the user (the CLI exits with status 2)."""


class NotFoundError(StoreError):
    """A model, run or other row the user named is not in the store."""


class HasPath(Protocol):
    @property
    def path(self) -> str: ...


@dataclass(eq=False)
class NewArtifact:
    """A folder being written. Put the files in `path`, store `relpath` in the row that points at
    it, and call `commit()` inside the write transaction that adds that row, as its last step:
    `commit()` renames the folder into place (atomic), and `check --fix`, which sweeps under the
    write lock, then never sees a folder whose row is still on its way. `keep()` after that
    transaction says the row is in: an exception inside the `with` block removes the folder,
    wherever it is, unless it was kept. A normal end of the block commits and keeps."""

    path: Path  # where the files are: the temporary folder until commit(), then the final one
    relpath: str  # the final place, relative to the store's artifacts/ folder
    final: Path
    committed: bool = False
    kept: bool = False

    def commit(self) -> None:
        if self.committed:
            return
        self.final.parent.mkdir(parents=True, exist_ok=True)
        self.path.rename(self.final)
        self.path, self.committed = self.final, True

    def keep(self) -> None:
        self.commit()
        self.kept = True


@dataclass(eq=False)
class Store:
    """An open store. `Store.open()` finds, creates or upgrades one."""

    root: Path  # the store folder (for a URL store, the folder that holds its files)
    artifacts: Path
    engine: Engine
    url: str  # the database, password hidden
    read_only: str = ""  # why this process may read this SQLite store and not write it ("" when it may)
    created: str = ""  # what this open made of a new store folder: "folder" or "database" (see remove_if_unused)
    _writer: Engine = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._writer = self.engine.execution_options(**{_IMMEDIATE: "shared"})

    @classmethod
    def open(
        cls, location: str | os.PathLike[str] | None = None, *, create: bool = True,
        files: str | os.PathLike[str] | None = None,
    ) -> Store:
        """The store at a folder or database URL, else $WORKBENCH_STORE, else the user data folder.

        A missing store is created (unless `create` is false), only in a new or empty folder, and an
        older schema upgraded. Anything that is not a store, a store whose database is missing or
        empty beside its artifacts/ (damaged), or a schema newer than this code, is refused with
        StoreError before a byte of it is written. A SQLite store this process cannot write (a
        read-only mount, a full disk) opens for reading, and refuses writes in one line. `files`
        is the folder of a URL store's files, in place of $WORKBENCH_ARTIFACTS.
        """
        where = _locate(location, files)
        root_existed = where.root.exists()
        revision = _inspect_sqlite(where, create) if where.db_file is not None else None
        database = where.db_file
        read_only = _why_read_only(database.parent, database) if database and revision is not None else ""
        if read_only and revision != head_revision():
            raise StoreError(
                f"the store {where.root} {read_only}, and its schema {revision} needs upgrading to "
                f"{head_revision()}: open it once it can be written"
            )
        engine = _engine(where, read_only=bool(read_only))
        try:
            if not read_only and (where.db_file is None or revision != head_revision()):
                _migrate(where, create)
            if where.is_url:
                where = _files_folder(engine, where, read_only=bool(read_only))
            artifacts = where.root / ARTIFACTS
            if not read_only:
                artifacts.mkdir(parents=True, exist_ok=True)
        except DatabaseError as e:
            engine.dispose()
            raise StoreError(f"cannot open the store database {where.shown}: {e.orig}") from None
        except OSError as e:
            engine.dispose()
            raise StoreError(f"cannot open the store {where.root}: {e.strerror or e}") from None
        except BaseException:
            engine.dispose()
            raise
        created = "" if revision is not None or where.db_file != where.root / DB_FILE else \
            "database" if root_existed else "folder"
        store = cls(where.root, artifacts, engine, where.shown, read_only, created)
        if not read_only:
            from store.jobs import recover  # (store.jobs imports this module)

            # Jobs whose process died become "interrupted"; one indexed query when none runs. A
            # damaged database still opens, so that `store check` can say what is wrong; the first
            # query that meets the damage says so (see _explain_errors).
            with suppress(StoreError):
                recover(store)
        return store

    @property
    def shown(self) -> str:
        """Where the store is, for people: its folder, else its database (a URL's password hidden)."""
        return str(self.root) if self.url == str(self.root / DB_FILE) else self.url

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @property
    def location(self) -> str:
        """What --store or $WORKBENCH_STORE must say for another process to open this store: its
        folder, else its database URL with the password (pass it in the environment, never on a
        command line)."""
        url = self.engine.url
        if url.get_backend_name() == "sqlite" and url.database == str(self.root / DB_FILE):
            return str(self.root)
        return url.render_as_string(hide_password=False)

    def environment(self) -> dict[str, str]:
        """The environment variables that open this very store in another process (a job process,
        a worker), its files folder included."""
        found = {"WORKBENCH_STORE": self.location}
        if self.location != str(self.root):
            found["WORKBENCH_ARTIFACTS"] = str(self.root)
        return found

    def session(self) -> Session:
        """A session for reading (use it as a context manager)."""
        return Session(self.engine)

    def require_writable(self) -> None:
        if self.read_only:
            raise StoreError(f"the store {self.root} {self.read_only}: it can be read, not written")

    @contextmanager
    def write(self, *, exclusive: bool = False) -> Iterator[Session]:
        """A session whose transaction holds the write lock from its start; commits at the end of
        the block, rolls back on an exception. Rows stay readable after it (no expiry). On
        PostgreSQL writers run at once; `exclusive` waits for every other write transaction to end
        and holds new ones off until this one ends (SQLite's write lock always does)."""
        self.require_writable()
        writer = self.engine.execution_options(**{_IMMEDIATE: "exclusive"}) if exclusive else self._writer
        with Session(writer, expire_on_commit=False, info={WRITE_SESSION: True}) as session:
            yield session
            session.commit()

    @contextmanager
    def new_artifact(self, kind: str = "models") -> Iterator[NewArtifact]:
        """A temporary folder under artifacts/tmp that becomes artifacts/<kind>/<unique name>;
        see NewArtifact for the order of steps."""
        if not re.fullmatch(r"[a-z][a-z0-9_-]*", kind) or kind == TMP:
            raise ValueError(f"bad artifact kind {kind!r}")
        self.require_writable()
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        relpath = f"{kind}/{stamp}-{secrets.token_hex(4)}"
        tmp = self.artifacts / TMP / temp_name()
        tmp.mkdir(parents=True)
        artifact = NewArtifact(tmp, relpath, self.artifacts / relpath)
        try:
            yield artifact
            artifact.keep()
        except BaseException:
            if not artifact.kept:
                shutil.rmtree(artifact.path, ignore_errors=True)
            raise

    def model_path(self, model: HasPath) -> Path:
        """The folder holding a model's files (a Model row or a queries.ModelInfo)."""
        return self.artifacts / model.path

    def remove_if_unused(self) -> bool:
        """Undo the creation of this store when nothing has used it yet (no row in any table, no
        file under artifacts/): a command that made the store and then failed on bad input leaves
        nothing behind. Whether it was removed; the store is closed either way."""
        if not self.created or self.read_only:
            self.close()
            return False
        with self.write() as session:  # under the write lock: no other process is writing it meanwhile
            connection = session.connection()
            tables = [n for n in inspect(connection).get_table_names() if n != "alembic_version"]
            used = any(connection.exec_driver_sql(f'SELECT 1 FROM "{t}" LIMIT 1').first() for t in tables)
            files = [p for p in self.artifacts.rglob("*") if not p.is_dir()] if self.artifacts.is_dir() else []
            if not used and not files:
                for suffix in ("", "-wal", "-shm", "-journal"):
                    (self.root / (DB_FILE + suffix)).unlink(missing_ok=True)
        self.close()
        if used or files:
            return False
        with suppress(OSError):  # (what another process put there since stays)
            for folder in [*sorted(self.artifacts.rglob("*"), reverse=True), self.artifacts]:
                folder.rmdir()
            if self.created == "folder":
                self.root.rmdir()
        return True

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def temp_name() -> str:
    """A name for a folder under artifacts/tmp that says which process on which host owns it."""
    return f"{os.getpid()}.{secrets.token_hex(4)}.{host_name()}"


def temp_owner_alive(name: str) -> bool:
    """Whether the process that made artifacts/tmp/<name> may still be writing it: true unless it
    ran on this host and is gone (a folder from another host sharing the store is left alone)."""
    pid, _, rest = name.partition(".")
    _, _, host = rest.partition(".")
    if not pid.isdigit() or not host:
        return False  # not a name temp_name() makes
    return host != host_name() or psutil.pid_exists(int(pid))


def host_name() -> str:
    """This machine's name as jobs and temporary folders record it."""
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())


@dataclass(frozen=True)
class _Location:
    url: URL
    root: Path
    db_file: Path | None  # the SQLite file, when the database is one
    is_url: bool = False  # a database URL: `root` is its files folder
    root_given: bool = False  # a URL store's files folder named by $WORKBENCH_ARTIFACTS (or Store.open's `files`)

    @property
    def shown(self) -> str:
        if self.db_file is not None:
            return str(self.db_file)
        return self.url.render_as_string(hide_password=True)


def _locate(location: str | os.PathLike[str] | None, files: str | os.PathLike[str] | None = None) -> _Location:
    if location is None:
        location = os.environ.get("WORKBENCH_STORE") or platformdirs.user_data_dir("workbench")
    text = os.fspath(location)
    if "://" not in text:
        root = Path(text).expanduser().absolute()
        if root.exists() and not root.is_dir():
            raise StoreError(
                f"{root} is a file, not a store folder (a store is a folder holding {DB_FILE} "
                f"and {ARTIFACTS}/)"
            )
        return _Location(URL.create("sqlite", database=str(root / DB_FILE)), root, root / DB_FILE)
    try:
        url = make_url(text)
        if url.drivername in ("postgresql", "postgres"):  # the driver the `postgres` extra installs
            url = url.set(drivername="postgresql+psycopg")
        url.get_dialect()  # a dialect SQLAlchemy lacks (a plugin not installed) is refused here
    except NoSuchModuleError:  # (an ArgumentError too)
        raise StoreError(f"no database dialect {url.drivername!r} is installed for {text.split('://')[0]}:// "
                         "URLs: a store URL is sqlite:///FILE or postgresql://...") from None
    except ArgumentError:
        raise StoreError(f"{text!r} is neither a folder nor a database URL") from None
    files = files or os.environ.get("WORKBENCH_ARTIFACTS")
    if files:
        root = Path(files).expanduser().absolute()
    else:
        digest = hashlib.sha256(url.render_as_string(hide_password=True).encode()).hexdigest()
        name = f"{url.get_backend_name()}-{digest[:12]}"
        root = Path(platformdirs.user_data_dir("workbench")) / "url-stores" / name
    if url.get_backend_name() != "sqlite":
        return _Location(url, root, None, True, bool(files))
    if url.database in (None, "", ":memory:") or url.query.get("mode") == "memory":
        raise StoreError("an in-memory SQLite database cannot hold a store: give a file or a folder")
    return _Location(url, root, Path(url.database).expanduser().absolute(), True, bool(files))


def _inspect_sqlite(where: _Location, create: bool) -> str | None:
    """The schema revision of the SQLite file (None for a new or empty one), read without writing a
    byte or leaving a -wal/-shm file behind; StoreError when it is not a workbench store."""
    path = where.db_file
    assert path is not None
    if not path.exists() or (path.is_file() and path.stat().st_size == 0):  # (SQLite reads an empty file as new)
        _refuse_damaged(where.root, where.shown)
        if not create:
            raise StoreError(f"no workbench store at {where.root if path.parent == where.root else where.shown}")
        _require_place_for_new_store(where)
        nearest = next(folder for folder in path.parents if folder.exists())
        if why := _why_read_only(nearest):
            raise StoreError(f"cannot create a store at {where.root}: {nearest} {why}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"cannot create a store at {where.root}: {e.strerror}") from None
        return None
    if not path.is_file():
        raise StoreError(f"{path} is not a file, so not a workbench store")
    # Only SQLite opens the file, never a plain open(): closing any descriptor of it drops every
    # POSIX lock this process holds on it, its open connections' too (a second Store.open in one
    # process), and another process may then take itself for the last user of the WAL and remove
    # it while this one still commits there.
    # Without a -wal file the main file holds everything and `immutable` reads it taking no lock
    # and creating nothing; with one, a plain read-only open sees the committed WAL frames too.
    live = path.with_name(path.name + "-wal").exists()
    uri = f"{path.as_uri()}?{'mode=ro' if live else 'immutable=1'}"
    try:
        connection = sqlite3.connect(uri, uri=True)
        try:
            tables = {r[0] for r in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            row = None
            if "alembic_version" in tables:
                row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
        finally:
            connection.close()
    except sqlite3.DatabaseError as e:
        if "not a database" in str(e):  # SQLite's word for a file without its header
            raise StoreError(f"{path} is not a SQLite database, so not a workbench store") from None
        if _disk_full(path.parent):
            raise StoreError(f"the disk holding the store database {path} is full ({e})") from None
        raise StoreError(f"{path} cannot be read as a SQLite database ({e})") from None
    if row is None and tables - {"alembic_version"}:
        raise StoreError(
            f"{path} is a SQLite database with tables of its own and no workbench schema version: "
            "not a workbench store"
        )
    revision = row[0] if row else None
    _require_known(revision, str(path))
    return revision


def _refuse_damaged(root: Path, database: str) -> None:
    """A store folder whose database is gone or empty still holds its files: taking it for a new
    store would call every model folder an orphan (and `store check --fix` would delete them)."""
    if (root / ARTIFACTS).exists():
        raise StoreError(
            f"{root} holds {ARTIFACTS}/ but its database {database} is missing or empty: a damaged store, "
            "left as it is (restore the database from a backup, or move the folder aside)"
        )


def _require_place_for_new_store(where: _Location) -> None:
    """A new store goes only in a new folder or an empty one (an empty database file, as a process
    creating the store at the same moment leaves it, counts as empty), never among other files."""
    database: set[str] = set()
    if where.db_file is not None and where.db_file.parent == where.root:
        database = {where.db_file.name + suffix for suffix in ("", "-wal", "-shm", "-journal")}
    elif where.db_file is not None and not where.db_file.parent.is_dir():  # a SQLite URL's folder is the user's
        raise StoreError(f"folder {where.db_file.parent} for the database {where.shown} does not exist")
    if where.root.exists() and not where.root.is_dir():
        raise StoreError(f"{where.root} is a file, not a folder for the store's files")
    others = sorted(p.name for p in where.root.iterdir() if p.name not in database) if where.root.is_dir() else []
    if others:
        raise StoreError(
            f"{where.root} is not empty and holds no workbench store (it has {others[0]}"
            f"{f' and {len(others) - 1} more' if len(others) > 1 else ''}): a new store needs a new or empty folder"
        )


@cache
def known_revisions() -> tuple[str, ...]:
    """The schema revisions this code knows, oldest first, read from the file names in
    migrations/versions rather than through Alembic: importing Alembic takes a quarter of a
    second, which opening a store already at head need not pay (Alembic loads only to migrate).
    Revisions are numbered in order, each revising the one before; tests/test_store_migrations.py
    checks that Alembic reads the same chain."""
    found = (REVISION_FILE.fullmatch(p.name) for p in (MIGRATIONS / "versions").iterdir())
    return tuple(sorted(m.group(1) for m in found if m))


def head_revision() -> str:
    return known_revisions()[-1]


def _require_known(revision: str | None, where: str) -> None:
    if revision is None or revision in known_revisions():
        return
    head = head_revision()
    if revision.isdigit() and int(revision) > int(head):
        raise StoreError(
            f"store schema {revision} is newer than this workbench knows (head {head}): "
            "upgrade the workbench"
        )
    raise StoreError(f"{where} has schema version {revision!r}, which no workbench knows: not a workbench store")


def _why_read_only(folder: Path, db_file: Path | None = None) -> str:
    """Why this process cannot write in the folder (and the SQLite file there), e.g. make a -wal and
    -shm beside it ("" when it can): access() says no on a read-only mount, even to root; a full
    disk cannot take the -shm file SQLite maps (it would fail with "disk I/O error" and leave a stub
    of one behind)."""
    if not os.access(folder, os.W_OK) or (db_file is not None and not os.access(db_file, os.W_OK)):
        return "is read-only"
    if _disk_full(folder):
        return "is on a full disk"
    return ""


def _disk_full(folder: Path) -> bool:
    try:
        return shutil.disk_usage(folder).free < MIN_FREE_BYTES
    except OSError:
        return False


def _read_only_connection(db_file: Path) -> sqlite3.Connection:
    """A connection that writes nothing, not even a -shm file (which a read-only mount refuses):
    `immutable` when no -wal holds commits the main file lacks, else a plain read-only open."""
    live = db_file.with_name(db_file.name + "-wal").exists()
    uri = f"{db_file.as_uri()}?{'mode=ro' if live else 'immutable=1'}"
    return sqlite3.connect(uri, uri=True, check_same_thread=False)


def _engine(where: _Location, *, for_migration: bool = False, read_only: bool = False) -> Engine:
    pool: dict[str, Any] = {"poolclass": NullPool} if for_migration else {}
    url = where.url
    if url.get_backend_name() != "sqlite":
        try:
            engine = create_engine(url, pool_pre_ping=True, **pool)
        except ImportError as e:
            raise StoreError(_missing_driver(url, e)) from None
        _explain_errors(engine, where)
        if url.get_backend_name() == "postgresql":

            @event.listens_for(engine, "begin")
            def begin_postgresql(connection: Connection) -> None:
                how = connection.get_execution_options().get(_IMMEDIATE)
                if how in ("shared", "exclusive"):  # see the module's docstring
                    lock = "pg_advisory_xact_lock" if how == "exclusive" else "pg_advisory_xact_lock_shared"
                    connection.exec_driver_sql(f"SELECT {lock}({WRITERS_LOCK})")

        return engine
    if read_only:
        assert where.db_file is not None
        engine = create_engine("sqlite://", creator=partial(_read_only_connection, where.db_file), **pool)
    else:
        engine = create_engine(url, **pool)
    _explain_errors(engine, where)

    @event.listens_for(engine, "connect")
    def set_up(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # `begin` below emits BEGIN, not the driver
        for pragma in (
            f"busy_timeout = {BUSY_TIMEOUT_S * 1000}",  # first: the next one may wait on a lock
            *([] if read_only else ["journal_mode = WAL"]),  # readers never block the writer, nor it them
            "synchronous = NORMAL",  # with WAL a power cut may lose the last commits, not consistency
            # A batch migration rebuilds tables, which trips the checks midway; _migrate runs
            # foreign_key_check before its commit instead.
            f"foreign_keys = {'OFF' if for_migration else 'ON'}",
        ):
            dbapi_connection.execute(f"PRAGMA {pragma}")

    @event.listens_for(engine, "begin")
    def begin(connection: Connection) -> None:
        immediate = connection.get_execution_options().get(_IMMEDIATE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


# What SQLite says when a store's database is damaged, or is not at the schema this code reads.
_DAMAGE = ("malformed", "file is not a database", "disk i/o error")
_UNLIKE_SCHEMA = ("no such table", "no such column")
_UNLIKE_SCHEMA_ERRORS = ("UndefinedTable", "UndefinedColumn")  # psycopg's error classes for the same


def _explain_errors(engine: Engine, where: _Location) -> None:
    """Turn the database errors that mean the store is damaged, read-only or out of space into one
    line (StoreError) wherever they arise: in any command, the TUI or a job."""

    @event.listens_for(engine, "handle_error")
    def explain(context: Any) -> StoreError | None:
        error = context.original_exception
        said = str(error).lower()
        first = (str(error).strip() or type(error).__name__).splitlines()[0]  # PostgreSQL adds lines of context
        if where.db_file is None and context.connection is None and not context.is_pre_ping:
            return StoreError(f"cannot connect to the store database {where.shown}: {first}")
        if "readonly database" in said or "read-only" in said:
            return StoreError(f"the store {where.root} is read-only: it can be read, not written")
        if "disk is full" in said or "no space left" in said or (
            "disk i/o error" in said and _disk_full(where.db_file.parent if where.db_file else where.root)
        ):
            return StoreError(f"the disk holding the store database {where.shown} is full ({first})")
        if any(word in said for word in _DAMAGE):
            return StoreError(
                f"the store database {where.shown} is damaged ({first}): `workbench store check` reports what"
            )
        if any(word in said for word in _UNLIKE_SCHEMA) or type(error).__name__ in _UNLIKE_SCHEMA_ERRORS:
            return StoreError(
                f"the store database {where.shown} lacks part of the workbench schema ({first}): "
                "`workbench store check` reports what"
            )
        return None


def _missing_driver(url: URL, error: ImportError) -> str:
    extra = "pip install 'width-pruning-workbench[postgres]'"
    if url.drivername == "postgresql+psycopg":
        return f"a PostgreSQL store needs the psycopg driver, which is not installed: {extra}"
    if url.get_backend_name() == "postgresql":
        return (f"the driver of {url.drivername}:// URLs is not installed ({error}): install it, or write "
                f"postgresql:// for psycopg ({extra})")
    return f"the database driver for {url.drivername} is not installed ({error}): install it"


def _migrate(where: _Location, create: bool) -> None:
    """Bring the schema to head in one transaction holding the write lock, so that processes
    opening a new store at once take turns instead of each creating the tables."""
    engine = _engine(where, for_migration=True)
    shown = where.url.render_as_string(hide_password=True)
    try:
        with engine.connect() as connection:
            connection.execution_options(**{_IMMEDIATE: "schema"})
            with connection.begin():
                _lock_for_migration(connection)
                current = _current_revision(connection)
                _require_known(current, shown)
                if current == head_revision():
                    return
                if current is None:
                    tables = set(inspect(connection).get_table_names()) - {"alembic_version"}
                    if tables:
                        raise StoreError(
                            f"{shown} holds tables of its own and no workbench schema version: "
                            "not a workbench store"
                        )
                    _refuse_damaged(where.root, shown)
                    if not create:
                        raise StoreError(f"no workbench store at {shown}")
                    _require_place_for_new_store(where)
                from alembic import command  # here only: a store at head never loads Alembic
                from alembic.config import Config

                config = Config()
                config.set_main_option("script_location", str(MIGRATIONS))
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
                if connection.dialect.name == "sqlite":
                    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise StoreError(f"upgrading {shown} would break {len(broken)} references; left as it was")
    finally:
        engine.dispose()


def _current_revision(connection: Connection) -> str | None:
    """The schema revision the database records (None for none), read as _inspect_sqlite reads it."""
    if not inspect(connection).has_table("alembic_version"):
        return None
    row = connection.execute(text("SELECT version_num FROM alembic_version")).first()
    return row[0] if row else None


def _lock_for_migration(connection: Connection) -> None:
    """Hold off other processes migrating the schema or recording the settings until this
    transaction ends (SQLite's write lock already does)."""
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")


_FILES = "files"  # setting: the folder of a URL store's files, as the host that created the store saw it
_STORE_ID = "store_id"  # setting: the id the store-id file in that folder holds


def _files_folder(engine: Engine, where: _Location, *, read_only: bool) -> _Location:
    """Where a URL store keeps its files: $WORKBENCH_ARTIFACTS (or `files`), else the folder the
    database records. A store without that record (new, or made by an older workbench) records
    the folder it is opened with, and a new store-id file there, in a transaction holding off
    any other process doing the same. StoreError when the folder found is not this store's."""
    def recorded(connection: Connection) -> dict[str, str]:
        return dict(connection.execute(select(Setting.key, Setting.value)).all())

    with engine.connect() as connection:
        settings = recorded(connection)
    if not settings.get(_STORE_ID):
        if read_only:
            return where
        with engine.connect() as connection:
            connection.execution_options(**{_IMMEDIATE: "schema"})
            with connection.begin():
                _lock_for_migration(connection)
                settings = recorded(connection)
                if not settings.get(_STORE_ID):
                    marker = where.root / STORE_ID_FILE
                    if marker.exists():
                        raise StoreError(f"{where.root} holds the files of another store (it has a {STORE_ID_FILE} "
                                         f"file), not those of {where.shown}: give the store a folder of its own")
                    settings = {_FILES: str(where.root), _STORE_ID: secrets.token_hex(16)}
                    where.root.mkdir(parents=True, exist_ok=True)
                    marker.write_text(settings[_STORE_ID] + "\n")
                    connection.execute(delete(Setting).where(Setting.key.in_(list(settings))))
                    connection.execute(insert(Setting), [{"key": k, "value": v} for k, v in settings.items()])
    root = where.root if where.root_given else Path(settings.get(_FILES, str(where.root)))
    how = "$WORKBENCH_ARTIFACTS" if where.root_given else "its database"
    marker = root / STORE_ID_FILE
    if not root.is_dir():
        raise StoreError(
            f"the files of the store {where.shown} are in {root} (so says {how}), which is not on this host: "
            "mount that folder there, or set WORKBENCH_ARTIFACTS to where it is mounted"
        )
    found = marker.read_text().strip() if marker.is_file() else None
    if found != settings[_STORE_ID]:
        whose = "another store's" if found else "no store's"
        raise StoreError(
            f"{root} (so says {how}) holds {whose} files, not those of the store {where.shown} (its {STORE_ID_FILE} "
            f"file {'differs' if found else 'is missing'}): set WORKBENCH_ARTIFACTS to the folder that holds them"
        )
    return replace(where, root=root)
