"""`store copy`: every row and file of one store into another, a folder store into a database URL
(PostgreSQL) or back, and verified at the end.

Tables are copied generically, from SQLModel's metadata in foreign-key order, so a table or column
added to store/tables.py is copied with no change here. Into a store that holds no rows the ids
are kept (and PostgreSQL's id sequences moved past them); with `merge`, into one that already
holds rows, every row gets a new id and whatever points at it follows: foreign keys (known from
the metadata), row ids inside JSON values (keys named like a foreign key column, e.g. `model_id`,
`run_id`, or `<table>_id` / `<table>_ids`, and `job:N` model references), and job logs, named
after their job's id. A merge is refused before anything is written when both stores hold a row
with the same unique key (a model name, a study name) or a file at the same place.

The files are the entries under artifacts/ that rows claim (store.check.claimed_entries). They
are copied into the target's artifacts/tmp first, then renamed into place inside the transaction
that inserts the rows, as its last step (as every write of the store does); a failure removes them.

The source is read in one snapshot and must be at rest: no job running (its process would go on
writing into the source) and nothing missing or damaged (`store check` clean but for orphans,
which are not copied). The target's `store check` must find nothing new after the copy.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, Connection, Integer, Table, func, insert, select, text, update
from sqlalchemy.schema import ForeignKeyConstraint, UniqueConstraint, sort_tables_and_constraints
from sqlmodel import Session, SQLModel

from store.check import CheckReport, check, claimed_entries
from store.db import ARTIFACTS, TMP, Store, StoreError, temp_name
from store.jobs import log_relpath
from store.tables import Job, Setting

BATCH = 1000  # rows per INSERT
KEEP_OUT = {Setting.__tablename__}  # each store's own: where its files are, its id
JOB_REFERENCE = re.compile(r"job:(\d+)")  # a MODEL naming the model a job made (workbench.sources)


@dataclass(frozen=True)
class CopyReport:
    target: str  # the target's database, password hidden
    target_files: Path  # the target's files folder
    rows: dict[str, int]  # table -> rows copied
    files: int  # entries under artifacts/ copied (a model folder, a log)
    merged: bool  # ids renumbered into a store that held rows
    check: CheckReport  # the target's, after the copy


@dataclass
class _Plan:
    """What one table's rows need on their way: the foreign keys to follow, and which of them
    point at rows that may not be in yet (to the table itself, or round a cycle of tables)."""

    table: Table
    references: dict[str, str] = field(default_factory=dict)  # column -> table it points at
    later: set[str] = field(default_factory=set)  # columns set once every table is in

    @property
    def serial(self) -> str | None:
        """The integer id the database numbers, if the table has one."""
        [key] = self.table.primary_key.columns if len(self.table.primary_key.columns) == 1 else [None]
        return key.name if key is not None and isinstance(key.type, Integer) else None


def copy_store(
    source: Store,
    target_location: str | os.PathLike[str],
    *,
    files: str | os.PathLike[str] | None = None,
    merge: bool = False,
    say: Callable[[str], None] = print,
) -> CopyReport:
    """Copy every row and file of `source` into the store at `target_location` (made there when
    it is a new folder or an empty database; `files`: its files folder, see Store.open), as the
    module's docstring says. StoreError, before anything is written, when it cannot be done."""
    _require_at_rest(source)
    with Store.open(target_location, files=files) as target:
        return _copy(source, target, merge, say)


def _copy(source: Store, target: Store, merge: bool, say: Callable[[str], None]) -> CopyReport:
    target.require_writable()
    if source.location == target.location:
        raise StoreError("the source and the target are the same store")
    plans = _plans()
    target_rows = _row_counts(target, plans)
    if any(target_rows.values()) and not merge:
        held = ", ".join(f"{n} in {table}" for table, n in target_rows.items() if n)
        raise StoreError(f"the target {target.url} already holds rows ({held}): copy into a new store or an empty "
                         "database, or merge into it with --merge (ids are renumbered)")  # fmt: skip
    before = check(target) if merge else None
    with source.engine.connect() as reading:
        if reading.dialect.name == "postgresql":  # one snapshot of every table
            reading = reading.execution_options(isolation_level="REPEATABLE READ")
        with reading.begin(), Session(bind=reading) as snapshot:
            entries = sorted(claimed_entries(snapshot))
            expected = {p.table.name: snapshot.scalar(select(func.count()).select_from(p.table)) or 0 for p in plans}
            if merge:
                _refuse_conflicts(reading, target, plans, entries)
            staged = _stage_files(source, target, entries)
            try:
                with target.write() as session:
                    ids, counts = _copy_rows(reading, session, plans, merge, say)
                    placed = _place_files(target, staged, ids if merge else None)
            except BaseException:
                shutil.rmtree(staged.folder, ignore_errors=True)
                raise
    shutil.rmtree(staged.folder, ignore_errors=True)
    if target.engine.dialect.name == "postgresql":
        # Statistics for the planner now, not when autovacuum gets to it: the TUI's queries on
        # freshly loaded tables plan blind and run 10-70x slower (bench/store_queries.py).
        with target.engine.connect() as connection:
            connection.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("ANALYZE")
    _verify(target, plans, expected, counts, target_rows)
    after = check(target)
    new = [p for p in after.problems if before is None or p not in before.problems]
    if new:
        raise StoreError(f"copied, but `store check` on the target finds {len(new)} problems: {new[0]}")
    return CopyReport(target.url, target.root, counts, placed, merge, after)


def _require_at_rest(source: Store) -> None:
    with source.session() as session:
        running = session.scalars(select(Job.id).where(Job.status == "running").order_by(Job.id)).all()
    if running:
        raise StoreError(f"job {running[0]} runs in the source store: copy a store no job process uses "
                         "(wait for its jobs, or cancel them)")  # fmt: skip
    report = check(source)
    wrong = [p for p in report.problems if not p.startswith("orphan:")]
    if wrong:
        raise StoreError(f"the source store has {len(wrong)} problems (`workbench store check` lists them), "
                         f"the first: {wrong[0]}")  # fmt: skip


def _plans() -> list[_Plan]:
    """Every table to copy, in an order where the rows a row points at come first."""
    tables = [t for t in SQLModel.metadata.tables.values() if t.name not in KEEP_OUT]
    ordered = sort_tables_and_constraints(tables)
    cycle_breakers: list[ForeignKeyConstraint] = [fk for table, fks in ordered if table is None for fk in fks]
    plans = []
    for table, _ in ordered:
        if table is None:
            continue
        plan = _Plan(table)
        for fk in table.foreign_key_constraints:
            [column] = fk.column_keys  # the store has no composite keys
            plan.references[column] = fk.referred_table.name
            if fk.referred_table is table or fk in cycle_breakers:
                plan.later.add(column)
        plans.append(plan)
    return plans


def _row_counts(store: Store, plans: list[_Plan]) -> dict[str, int]:
    with store.session() as session:
        return {p.table.name: session.scalar(select(func.count()).select_from(p.table)) or 0 for p in plans}


def _refuse_conflicts(reading: Connection, target: Store, plans: list[_Plan], entries: list[str]) -> None:
    """A merge cannot hold two rows with one unique key (of columns that are no row ids), nor two
    files at one place (a log is renamed, so it never clashes)."""
    with target.session() as session:
        for plan in plans:
            keys = [tuple(index.columns) for index in plan.table.indexes if index.unique]
            keys += [tuple(c.columns) for c in plan.table.constraints if isinstance(c, UniqueConstraint)]
            for columns in keys:
                if any(c.name in plan.references or c.primary_key for c in columns):
                    continue
                mine = set(session.execute(select(*columns)).all())
                theirs = reading.execute(select(*columns)).all()
                both = sorted(tuple(r) for r in theirs if tuple(r) in mine)
                if both:
                    what = ", ".join(c.name for c in columns)
                    value = ", ".join(repr(v) for v in both[0])
                    more = f" (and {len(both) - 1} more)" if len(both) > 1 else ""
                    raise StoreError(f"both stores hold a {plan.table.name} with {what} {value}{more}: rename or "
                                     "remove it in one of them, then merge")  # fmt: skip
    for entry in entries:
        if not entry.startswith(f"{_LOGS}/") and (target.artifacts / entry).exists():
            raise StoreError(f"both stores hold {ARTIFACTS}/{entry}: it cannot be merged")


_LOGS = Path(log_relpath(0)).parent.name  # artifacts/logs: job logs, named after their job


@dataclass
class _Staged:
    folder: Path  # under the target's artifacts/tmp
    entries: list[str]


def _stage_files(source: Store, target: Store, entries: list[str]) -> _Staged:
    """Copy the source's files into a folder of the target's artifacts/tmp (slow, outside any
    transaction)."""
    folder = target.artifacts / TMP / temp_name()
    folder.mkdir(parents=True)
    try:
        for entry in entries:
            where, to = source.artifacts / entry, folder / entry
            to.parent.mkdir(parents=True, exist_ok=True)
            if where.is_dir():
                shutil.copytree(where, to, symlinks=True)
            elif where.exists():
                shutil.copy2(where, to)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return _Staged(folder, entries)


def _place_files(target: Store, staged: _Staged, ids: dict[str, dict[Any, Any]] | None) -> int:
    """Rename the staged files into place (the write transaction's last step); with `ids`, job
    logs take their job's new number. How many were placed."""
    placed = 0
    for entry in staged.entries:
        final = entry
        if ids is not None and entry.startswith(f"{_LOGS}/"):
            old = re.fullmatch(rf"{_LOGS}/job-(\d+)\.log", entry)
            if old and int(old.group(1)) in ids["job"]:
                final = str(Path(log_relpath(ids["job"][int(old.group(1))])).relative_to(ARTIFACTS))
        if not (staged.folder / entry).exists():
            continue
        (target.artifacts / final).parent.mkdir(parents=True, exist_ok=True)
        (staged.folder / entry).rename(target.artifacts / final)
        placed += 1
    return placed


def _copy_rows(
    reading: Connection, session: Session, plans: list[_Plan], merge: bool, say: Callable[[str], None]
) -> tuple[dict[str, dict[Any, Any]], dict[str, int]]:
    """Insert every source row into the target's transaction; the ids each got (source -> target,
    by table) and how many rows of each table."""
    ids: dict[str, dict[Any, Any]] = {p.table.name: {} for p in plans}
    counts: dict[str, int] = {}
    later: list[tuple[_Plan, Any, str, Any]] = []  # (plan, target id, column, source value)
    writing = session.connection()
    for plan in plans:
        table, serial = plan.table, plan.serial
        counts[table.name] = 0
        for batch in _batches(reading, table):
            rows = []
            for row in batch:
                values = dict(row._mapping)
                for column, referred in plan.references.items():
                    value = values[column]
                    if value is None:
                        continue
                    if column in plan.later and value not in ids[referred]:
                        values[column] = None  # set below, once the row it points at is in
                        later.append((plan, values[serial] if serial else None, column, value))
                    elif merge:
                        values[column] = ids[referred][value]
                rows.append(values)
            if merge and serial:
                sources = [r.pop(serial) for r in rows]
                made = writing.execute(insert(table).returning(table.c[serial], sort_by_parameter_order=True), rows)
                ids[table.name].update(zip(sources, made.scalars(), strict=True))
            else:
                writing.execute(insert(table), rows)
                if serial:
                    ids[table.name].update((r[serial], r[serial]) for r in rows)
            counts[table.name] += len(rows)
        say(f"{table.name}: {counts[table.name]} rows")
    for plan, row_id, column, value in later:
        table, serial = plan.table, plan.serial
        assert serial is not None
        new_id = ids[table.name][row_id] if merge else row_id
        pointed = ids[plan.references[column]][value]
        writing.execute(update(table).where(table.c[serial] == new_id).values({column: pointed}))
    if merge:
        _follow_json_references(writing, plans, ids)
        _rename_logs(writing, ids)
    elif writing.dialect.name == "postgresql":
        _advance_sequences(writing, plans)
    return ids, counts


def _batches(reading: Connection, table: Table) -> Iterator[list[Any]]:
    order = list(table.primary_key.columns)
    yield from reading.execute(select(table).order_by(*order).execution_options(yield_per=BATCH)).partitions()


def _reference_keys(plans: list[_Plan]) -> dict[str, str]:
    """JSON keys holding row ids, and the table they point at: every foreign key column's name
    (`model_id`, `run_id`, `job_id`...), and `<table>_id`, `<table>_ids` for every table."""
    keys = {f"{p.table.name}_id": p.table.name for p in plans}
    keys |= {f"{p.table.name}_ids": p.table.name for p in plans}
    for plan in plans:
        keys |= {column: referred for column, referred in plan.references.items() if column.endswith("_id")}
    return keys


def _renumbered(value: Any, keys: dict[str, str], ids: dict[str, dict[Any, Any]]) -> Any:
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            table = keys.get(key)
            if table and isinstance(item, int) and item in ids[table]:
                out[key] = ids[table][item]
            elif table and isinstance(item, list) and all(isinstance(i, int) for i in item):
                out[key] = [ids[table].get(i, i) for i in item]
            else:
                out[key] = _renumbered(item, keys, ids)
        return out
    if isinstance(value, list):
        return [_renumbered(item, keys, ids) for item in value]
    if isinstance(value, str) and (match := JOB_REFERENCE.fullmatch(value)) and int(match.group(1)) in ids["job"]:
        return f"job:{ids['job'][int(match.group(1))]}"
    return value


def _follow_json_references(writing: Connection, plans: list[_Plan], ids: dict[str, dict[Any, Any]]) -> None:
    """Renumber the row ids inside the copied rows' JSON values, once every row has its new id."""
    keys = _reference_keys(plans)
    for plan in plans:
        serial = plan.serial
        columns = [c for c in plan.table.columns if isinstance(c.type, JSON)]
        if not columns or not serial or not ids[plan.table.name]:
            continue
        key = plan.table.c[serial]
        new_ids = list(ids[plan.table.name].values())
        for start in range(0, len(new_ids), BATCH):
            rows = writing.execute(select(key, *columns).where(key.in_(new_ids[start:start + BATCH]))).all()
            for row in rows:
                changed = {c.name: _renumbered(row[i + 1], keys, ids) for i, c in enumerate(columns)}
                changed = {name: v for name, v in changed.items() if v != row._mapping[name]}
                if changed:
                    writing.execute(update(plan.table).where(key == row[0]).values(changed))


def _rename_logs(writing: Connection, ids: dict[str, dict[Any, Any]]) -> None:
    """A job's log is named after its id: the merged jobs' logs after their new ones."""
    for old, new in ids["job"].items():
        writing.execute(
            update(Job).where(Job.id == new, Job.log_path == log_relpath(old)).values(log_path=log_relpath(new))
        )


def _advance_sequences(writing: Connection, plans: list[_Plan]) -> None:
    """Rows inserted with their ids leave PostgreSQL's sequences behind: move each past the ids."""
    for plan in plans:
        if plan.serial:
            writing.execute(
                text(f"SELECT setval(pg_get_serial_sequence('{plan.table.name}', '{plan.serial}'), max({plan.serial})) "
                     f"FROM {plan.table.name} HAVING max({plan.serial}) IS NOT NULL")  # fmt: skip
            )


def _verify(
    target: Store, plans: list[_Plan], expected: dict[str, int], counts: dict[str, int], before: dict[str, int]
) -> None:
    """Every source row (as counted in the source's snapshot) is in the target: its tables hold
    what they held plus those."""
    found = _row_counts(target, plans)
    for table, n in expected.items():
        if counts[table] != n or found[table] != before[table] + n:
            raise StoreError(f"copied, but the target's {table} holds {found[table]} rows where "
                             f"{before[table] + n} were expected")  # fmt: skip
