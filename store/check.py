"""`store check`: the database's own integrity, its schema against the tables this code knows (the
head revision), rows pointing at missing files, and files under artifacts/ that no row points at
(orphans), which `fix` removes.

Every entry under artifacts/ belongs to a row: artifacts/<kind>/<name> is claimed by a model whose
path is in it, by a job whose log path is in it, or by a job not yet done whose spec names it as its
checkpoint folder (a heal's, kept for a retry to resume from); a new kind of artifact adds its column
to `claimed_entries` (which `store copy` reads too). Folders under artifacts/tmp belong to the
process that is writing them (see db.temp_name); once that process is gone they are orphans too.

`fix` removes orphans only, and only from a database that is whole: in a damaged one (integrity or
schema) a row that claims a folder may be unreadable, so its folder would look like an orphan.
Rows pointing at missing files stay: a model row carries lineage and evaluation history, and
removing it is a decision for `models rm`, not for a repair.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from sqlalchemy import select
from sqlalchemy.exc import DatabaseError
from sqlmodel import Session

from store.db import ARTIFACTS, TMP, Store, StoreError, temp_name, temp_owner_alive
from store.tables import Job, Model


@dataclass(frozen=True)
class CheckReport:
    integrity: tuple[str, ...]  # what SQLite's integrity_check found (empty when "ok"), or why it could not read
    # (PostgreSQL keeps its own pages whole and always enforces references: only the schema and
    # the files are checked there)
    schema: tuple[str, ...]  # how the database's tables differ from those of the head revision
    foreign_keys: tuple[str, ...]  # rows whose reference points at no row
    missing_files: tuple[str, ...]  # rows whose files are not there
    orphans: tuple[str, ...]  # entries under artifacts/ that no row claims (paths relative to it)
    in_progress: tuple[str, ...]  # temporary folders of live writers: not a problem
    removed: tuple[str, ...]  # orphans removed by fix

    @property
    def damaged(self) -> bool:
        """The database itself is not whole: its rows cannot be trusted to say what is an orphan."""
        return bool(self.integrity or self.schema)

    @property
    def problems(self) -> list[str]:
        """What is still wrong, one line each."""
        left = [o for o in self.orphans if o not in self.removed]
        return [
            *(f"integrity: {m}" for m in self.integrity),
            *(f"schema: {m}" for m in self.schema),
            *(f"broken reference: {m}" for m in self.foreign_keys),
            *(f"missing: {m}" for m in self.missing_files),
            *(f"orphan: {ARTIFACTS}/{o}" for o in left),
        ]

    @property
    def clean(self) -> bool:
        return not self.problems


def check(store: Store, *, fix: bool = False) -> CheckReport:
    if fix:
        store.require_writable()
    integrity, foreign_keys = _database_checks(store)
    schema = _schema_differences(store)
    if integrity or schema:
        fix = False
    try:
        return _check_files(store, fix, integrity, schema, foreign_keys)
    except StoreError as e:  # the damage reached the rows themselves: what the files are cannot be told
        return CheckReport((*integrity, f"cannot read the models and jobs: {_cause(e)}"), schema, foreign_keys,
                           (), (), (), ())


def _check_files(
    store: Store, fix: bool, integrity: tuple[str, ...], schema: tuple[str, ...], foreign_keys: tuple[str, ...]
) -> CheckReport:
    # fix sweeps under the write lock (taken exclusively on PostgreSQL): a writer renames its
    # folder into place and commits the row naming it inside one write transaction, so no folder
    # is seen between the two.
    with (store.write(exclusive=True) if fix else store.session()) as session:
        models = session.execute(select(Model.id, Model.name, Model.path)).all()
        jobs = session.execute(select(Job.id, Job.status, Job.log_path).where(Job.log_path.is_not(None))).all()
        missing = [
            f"model {name!r} (id {id_}): folder {ARTIFACTS}/{path} is missing"
            for id_, name, path in models
            if not (store.artifacts / path).is_dir()
        ]
        missing += [
            f"job {id_}: log {log} is missing"
            for id_, status, log in jobs
            if status != "queued" and not (store.root / log).exists()  # a queued job has no log yet
        ]
        orphans, in_progress = _unclaimed(store.artifacts, claimed_entries(session))
        # Moved aside under the lock (a rename, fast); deleted after it is released.
        doomed = [_move_aside(store.artifacts, o) for o in orphans] if fix else []
    for path in doomed:
        _delete(path)
    return CheckReport(
        integrity=integrity,
        schema=schema,
        foreign_keys=foreign_keys,
        missing_files=tuple(missing),
        orphans=tuple(orphans),
        in_progress=tuple(in_progress),
        removed=tuple(orphans) if fix else (),
    )


def claimed_entries(session: Session) -> set[str]:
    """The entries under artifacts/ that rows claim (`<kind>/<name>`, relative to artifacts/):
    what a store's files are (store.copy copies them)."""
    claimed = {_entry(PurePosixPath(path)) for path in session.scalars(select(Model.path))}
    for log in session.scalars(select(Job.log_path).where(Job.log_path.is_not(None))):
        parts = PurePosixPath(log).parts
        if parts[:1] == (ARTIFACTS,):
            claimed.add(_entry(PurePosixPath(*parts[1:])))
    checkpointed = session.execute(select(Job.spec).where(Job.kind == "heal", Job.status != "done")).scalars()
    claimed |= {_entry(PurePosixPath(spec["checkpoint"])) for spec in checkpointed if spec.get("checkpoint")}
    return claimed


def _database_checks(store: Store) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if not store.is_sqlite:
        return (), ()  # other databases keep their own integrity
    with store.engine.connect() as connection:
        try:  # up to 100 findings, some of several lines
            found = [line for r in connection.exec_driver_sql("PRAGMA integrity_check") for line in r[0].splitlines()]
        except (StoreError, DatabaseError) as e:  # too damaged for SQLite to walk
            found = [f"SQLite cannot walk the database: {_cause(e)}"]
        try:
            broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
        except (StoreError, DatabaseError) as e:
            found.append(f"cannot check references: {_cause(e)}")
            broken = []
    integrity = tuple(m for m in found if m not in ("ok", "*** in database main ***"))
    foreign_keys = tuple(f"{table} row {rowid} points at a missing {parent}" for table, rowid, parent, _ in broken)
    return integrity, foreign_keys


def _cause(error: Exception) -> str:
    """What the database said (a StoreError from the engine carries it as its cause)."""
    cause = error.__cause__ if isinstance(error, StoreError) and error.__cause__ else error
    return str(getattr(cause, "orig", None) or cause)


def _schema_differences(store: Store) -> tuple[str, ...]:
    """The tables, columns and indexes of store/tables.py (the head revision) that the database lacks
    or has otherwise, one line each, as Alembic's comparison finds them."""
    from alembic.autogenerate import compare_metadata  # here only: opening a store never loads Alembic
    from alembic.runtime.migration import MigrationContext
    from sqlmodel import SQLModel  # (store.tables, imported above, put every table on its metadata)

    try:
        with store.engine.connect() as connection:
            diff = compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)
    except (StoreError, DatabaseError) as e:
        return (f"cannot read the schema: {_cause(e)}",)
    return tuple(_describe(change) for change in _flatten(diff))


def _flatten(diff: list) -> list[tuple]:
    """Alembic lists column changes of one table as a list inside the list."""
    return [c for entry in diff for c in (entry if isinstance(entry, list) else [entry])]


def _describe(change: tuple) -> str:
    what = change[0]
    if what.startswith("modify_"):  # ("modify_type", schema, table, column, info, database's, schema's)
        table, column, found, expected = change[2], change[3], change[-2], change[-1]
        return f"column {table}.{column}: {what.removeprefix('modify_')} {found}, the schema says {expected}"
    state = "missing" if what.startswith("add_") else "not in the workbench schema"
    if what in ("add_table", "remove_table"):
        return f"table {change[1].name} is {state}"
    if what in ("add_column", "remove_column"):
        return f"column {change[2]}.{change[3].name} is {state}"
    if what.endswith(("_index", "_constraint")):
        item = change[1]
        return f"{what.split('_')[1]} {item.name} on {getattr(item.table, 'name', '?')} is {state}"
    return f"differs from the workbench schema: {change}"


def _entry(path: PurePosixPath) -> str:
    """The artifacts/ entry a stored path lies in: <kind>/<name>, or a top-level name."""
    return "/".join(path.parts[:2])


def _unclaimed(artifacts: Path, claimed: set[str]) -> tuple[list[str], list[str]]:
    orphans: list[str] = []
    in_progress: list[str] = []
    for top in sorted(artifacts.iterdir()):
        if top.name in claimed:
            continue
        if top.is_symlink() or not top.is_dir():
            orphans.append(top.name)
            continue
        for entry in sorted(top.iterdir()):
            relpath = f"{top.name}/{entry.name}"
            if top.name == TMP and temp_owner_alive(entry.name):
                in_progress.append(relpath)
            elif relpath not in claimed:
                orphans.append(relpath)
    return orphans, in_progress


def _move_aside(artifacts: Path, relpath: str) -> Path:
    aside = artifacts / TMP / temp_name()
    aside.parent.mkdir(exist_ok=True)
    (artifacts / relpath).rename(aside)
    return aside


def _delete(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()
