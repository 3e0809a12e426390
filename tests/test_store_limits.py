"""A store on a read-only mount or a full disk: reading works, writing says why in one line, and
nothing is written or left behind (no -wal, -shm or new folder)."""

from __future__ import annotations

import pytest
from mounts import fill, read_only, small_disk
from store_fixtures import add_model, add_pruned, eval_row, snapshot

from store import jobs, queries
from store.db import DB_FILE, Store, StoreError
from workbench.cli.main import main


def _fill_store(location):
    with Store.open(location) as store:
        base = add_model(store, "base")
        add_pruned(store, base, "base-ppm")
        with store.write() as session:
            queries.add_evaluations(session, [eval_row(base)])
        failed = jobs.add_job(store, "prune", {"request": {"model": "base"}})
        with store.write() as session:
            from sqlalchemy import update

            from store.tables import Job

            session.execute(update(Job).where(Job.id == failed).values(status="failed", error="e"))


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


READING = [
    ["models", "list"],
    ["models", "show", "base-ppm"],
    ["runs", "show", "1"],
    ["jobs", "list"],
    ["jobs", "show", "1"],
    ["export", "evals"],
    ["store", "check"],
]
WRITING = [
    ["models", "rm", "base-ppm"],
    ["store", "check", "--fix"],
    ["jobs", "retry", "1"],
    ["jobs", "cancel", "1"],
    ["jobs", "work"],
]


def test_a_read_only_store_reads_and_refuses_writes_in_one_line(tmp_path, capsys, tiny_model_dirs):
    location = tmp_path / "store"
    _fill_store(location)
    before = snapshot(location)
    with read_only(location):
        for argv in READING:
            code, out, err = _run(capsys, *argv, "--store", str(location))
            assert (code, err) == (0, ""), argv
            assert out
        refusal = f"workbench: error: the store {location} is read-only: it can be read, not written\n"
        for argv in [*WRITING, ["prune", str(tiny_model_dirs["llama"]), "--scorer", "ppm", "--percent", "20"]]:
            code, out, err = _run(capsys, *argv, "--store", str(location))
            if argv[:2] == ["jobs", "cancel"]:  # a failed job: nothing to cancel, said before writing
                assert code == 2 and err.count("\n") == 1
                continue
            assert (code, out, err) == (2, "", refusal), argv
        with pytest.raises(StoreError, match="is read-only: it can be read, not written"), Store.open(location) as s:
            jobs.add_job(s, "prune", {})
    assert snapshot(location) == before
    assert sorted(p.name for p in location.iterdir()) == ["artifacts", DB_FILE]


def test_a_full_disk_reads_and_refuses_writes_in_one_line(tmp_path, capsys):
    with small_disk(tmp_path / "disk") as disk:
        location = disk / "store"
        _fill_store(location)
        fill(disk)
        before = snapshot(location)

        for argv in READING:
            code, out, err = _run(capsys, *argv, "--store", str(location))
            assert (code, err) == (0, ""), argv
        for argv in WRITING[:3]:
            code, out, err = _run(capsys, *argv, "--store", str(location))
            assert (code, out) == (2, ""), argv
            assert err == f"workbench: error: the store {location} is on a full disk: it can be read, not written\n"
        code, out, err = _run(capsys, "models", "import", "smollm2", "--store", str(disk / "new" / "store"))
        assert (code, out) == (2, "")
        assert err == f"workbench: error: cannot create a store at {disk / 'new' / 'store'}: {disk} is on a full disk\n"

        assert snapshot(location) == before
        assert sorted(p.name for p in disk.iterdir()) == ["filler", "store"]
        assert sorted(p.name for p in location.iterdir()) == ["artifacts", DB_FILE]
