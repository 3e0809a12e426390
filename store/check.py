"""`store check`: the database's own integrity, rows pointing at missing files, and files under
artifacts/ that no row points at (orphans), which `fix` removes.

Every entry under artifacts/ belongs to a row: artifacts/<kind>/<name> is claimed by a model whose
path is in it, by a job whose log path is in it, or by a job not yet done whose spec names it as its
checkpoint folder (a heal's, kept for a retry to resume from); a new kind of artifact adds its column
to `_claimed`. Folders under artifacts/tmp belong to the process that is writing them (see
db.temp_name); once that process is gone they are orphans too.

`fix` removes orphans only. Rows pointing at missing files stay: a model row carries lineage and
evaluation history, and removing it is a decision for `models rm`, not for a repair.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from sqlalchemy import select

from store.db import ARTIFACTS, TMP, Store, temp_name, temp_owner_alive
from store.tables import Job, Model


@dataclass(frozen=True)
class CheckReport:
    integrity: tuple[str, ...]  # what SQLite's integrity_check found (empty when "ok")
    foreign_keys: tuple[str, ...]  # rows whose reference points at no row
    missing_files: tuple[str, ...]  # rows whose files are not there
    orphans: tuple[str, ...]  # entries under artifacts/ that no row claims (paths relative to it)
    in_progress: tuple[str, ...]  # temporary folders of live writers: not a problem
    removed: tuple[str, ...]  # orphans removed by fix

    @property
    def problems(self) -> list[str]:
        """What is still wrong, one line each."""
        left = [o for o in self.orphans if o not in self.removed]
        return [
            *(f"integrity: {m}" for m in self.integrity),
            *(f"broken reference: {m}" for m in self.foreign_keys),
            *(f"missing: {m}" for m in self.missing_files),
            *(f"orphan: {ARTIFACTS}/{o}" for o in left),
        ]

    @property
    def clean(self) -> bool:
        return not self.problems


def check(store: Store, *, fix: bool = False) -> CheckReport:
    integrity, foreign_keys = _database_checks(store)
    # fix sweeps under the write lock: a writer renames its folder into place and commits the
    # row naming it inside one write transaction, so no folder is seen between the two.
    with (store.write() if fix else store.session()) as session:
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
        claimed = {_entry(PurePosixPath(path)) for _, _, path in models}
        for _, _, log in jobs:
            parts = PurePosixPath(log).parts
            if parts[:1] == (ARTIFACTS,):
                claimed.add(_entry(PurePosixPath(*parts[1:])))
        checkpointed = session.execute(select(Job.spec).where(Job.kind == "heal", Job.status != "done")).scalars()
        claimed |= {_entry(PurePosixPath(spec["checkpoint"])) for spec in checkpointed if spec.get("checkpoint")}
        orphans, in_progress = _unclaimed(store.artifacts, claimed)
        # Moved aside under the lock (a rename, fast); deleted after it is released.
        doomed = [_move_aside(store.artifacts, o) for o in orphans] if fix else []
    for path in doomed:
        _delete(path)
    return CheckReport(
        integrity=integrity,
        foreign_keys=foreign_keys,
        missing_files=tuple(missing),
        orphans=tuple(orphans),
        in_progress=tuple(in_progress),
        removed=tuple(orphans) if fix else (),
    )


def _database_checks(store: Store) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if not store.is_sqlite:
        return (), ()  # other databases keep their own integrity
    with store.engine.connect() as connection:
        found = [r[0] for r in connection.exec_driver_sql("PRAGMA integrity_check")]
        broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    integrity = tuple(m for m in found if m != "ok")
    foreign_keys = tuple(f"{table} row {rowid} points at a missing {parent}" for table, rowid, parent, _ in broken)
    return integrity, foreign_keys


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
