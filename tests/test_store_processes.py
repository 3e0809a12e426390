"""The store under real processes: one killed halfway through writing a run, two writing at once,
`store check --fix` waiting for a writer whose folder is in place but whose row is not committed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select
from store_fixtures import add_model, worker

from store import jobs, queries
from store.check import check
from store.db import Store
from store.tables import Evaluation, LayerRetention, Model, PruningRun

REPO = Path(__file__).resolve().parents[1]
BOTH = pytest.mark.backends("sqlite", "postgresql")


def _wait_for(path: Path, process, limit_s: float = 60) -> None:
    deadline = time.monotonic() + limit_s
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the worker never reached its pause"
        time.sleep(0.01)


@BOTH
def test_a_process_killed_while_writing_a_run_leaves_no_partial_rows(location, tmp_path):
    with Store.open(location) as store:
        add_model(store, "base")
    marker = tmp_path / "paused"
    process = worker("hang-in-run", str(location), str(marker))
    _wait_for(marker, process)
    process.send_signal(signal.SIGKILL)
    process.wait()

    with Store.open(location) as store:
        with store.session() as session:
            assert session.scalars(select(Model.name)).all() == ["base"]
            assert session.scalar(select(func.count(PruningRun.id))) == 0
            assert session.scalar(select(func.count(LayerRetention.id))) == 0
        report = check(store)
        # The database is whole; only the killed writer's temporary folder is left over.
        assert report.integrity == () and report.foreign_keys == () and report.missing_files == ()
        assert len(report.orphans) == 1 and report.orphans[0].startswith("tmp/")
        assert check(store, fix=True).removed == report.orphans
        report = check(store)  # (these rows have no files: only the database's own checks apply)
        assert report.integrity == () and report.foreign_keys == ()
        add_model(store, "after")  # the killed writer's lock is gone
        assert [m.name for m in queries.list_models(store)] == ["after", "base"]


@BOTH
def test_two_processes_writing_at_once_both_succeed(location, tmp_path):
    # Both processes also race to create the store (a new folder, or an empty database).
    go = tmp_path / "go"
    n = 100
    writers = [worker("writer", str(location), str(go), name, str(n)) for name in ("a", "b")]
    go.touch()
    for process in writers:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        assert "lock" not in err.lower() and "deadlock" not in err.lower()
        assert out.strip() == "ok"

    with Store.open(location) as store, store.session() as session:
        for name in ("a", "b"):
            names = set(session.scalars(select(Model.name).where(Model.name.startswith(f"{name}-"))))
            assert names == {f"{name}-{i}" for i in range(n)}
        runs = n // 10 - 1  # every tenth transaction but the first records a run instead
        assert session.scalar(select(func.count(PruningRun.id))) == 2 * runs
        assert session.scalar(select(func.count(LayerRetention.id))) == 2 * runs * 3
        assert session.scalar(select(func.count(Evaluation.id))) == 2 * (n - runs)
        report = check(store)  # (these rows have no files: only the database's own checks apply)
        assert report.integrity == () and report.foreign_keys == ()


@BOTH
def test_check_fix_waits_for_a_writer_whose_folder_is_in_place_and_row_not_yet_committed(location, tmp_path):
    with Store.open(location) as store:
        add_model(store, "base")
    placed, go = tmp_path / "placed", tmp_path / "go"
    process = worker("place-and-wait", str(location), str(placed), str(go))
    _wait_for(placed, process)
    with Store.open(location) as store:
        reports = []
        sweep = threading.Thread(target=lambda: reports.append(check(store, fix=True)))
        sweep.start()
        sweep.join(timeout=2)
        assert sweep.is_alive()  # waiting for the writer's transaction, not sweeping its folder
        go.touch()
        sweep.join(timeout=60)
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
        assert reports and reports[0].removed == () and reports[0].clean, reports
        placed_model = queries.get_model(store, "placed")
        assert store.model_path(placed_model).is_dir()


def test_opening_a_store_twice_in_one_process_keeps_its_commits_visible_to_other_processes(tmp_path):
    """Store.open reads the file only through SQLite: a plain open() and close() of it would drop
    this process's locks, and the next process to close would take itself for the WAL's last user
    and remove it, leaving this process committing to a deleted file."""
    location = tmp_path / "store"
    code = "import sys; from store import jobs; from store.db import Store; " \
        "print(len(jobs.list_jobs(Store.open(sys.argv[1]))))"
    env = os.environ | {"PYTHONPATH": str(REPO)}

    def count_elsewhere() -> int:
        done = subprocess.run([sys.executable, "-c", code, str(location)], env=env, capture_output=True, text=True,
                              check=True)  # fmt: skip
        return int(done.stdout)

    first = Store.open(location)
    jobs.add_job(first, "prune", {})
    second = Store.open(location)
    assert count_elsewhere() == 1  # that process opened and closed the store
    jobs.add_job(first, "prune", {})
    jobs.add_job(second, "prune", {})
    assert count_elsewhere() == 3
    first.close()
    second.close()
