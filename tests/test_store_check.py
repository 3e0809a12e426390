"""`store check`: what it finds, and what --fix removes (orphans only)."""

from __future__ import annotations

import shutil
import sqlite3

import pytest
from store_fixtures import add_model, add_pruned, snapshot

from store import queries
from store.check import check
from store.db import DB_FILE, Store, StoreError, temp_name
from store.tables import Job
from workbench.cli.main import main

BOTH = pytest.mark.backends("sqlite", "postgresql")


@BOTH
def test_a_fresh_store_and_one_with_models_are_clean(store):
    assert check(store).clean
    add_model(store, "m")
    report = check(store)
    assert report.clean and report.problems == [] and report.orphans == ()


@BOTH
def test_orphans_are_reported_and_fix_removes_them_but_not_live_writers(store):
    add_model(store, "m")
    (store.artifacts / "models" / "forgotten").mkdir()
    (store.artifacts / "stray.txt").write_text("x")
    dead = store.artifacts / "tmp" / f"999999999.abcd.{temp_name().split('.', 2)[2]}"  # no such process
    dead.mkdir(parents=True)
    live = store.artifacts / "tmp" / temp_name()  # this process: still writing
    live.mkdir()

    report = check(store)
    assert set(report.orphans) == {"models/forgotten", "stray.txt", f"tmp/{dead.name}"}
    assert report.in_progress == (f"tmp/{live.name}",)
    assert not report.clean and len(report.problems) == 3

    fixed = check(store, fix=True)
    assert set(fixed.removed) == set(report.orphans) and fixed.clean
    assert not (store.artifacts / "models" / "forgotten").exists() and not (store.artifacts / "stray.txt").exists()
    assert not dead.exists() and live.is_dir()
    assert queries.get_model(store, "m") and store.model_path(queries.get_model(store, "m")).is_dir()
    assert [p.name for p in (store.artifacts / "tmp").iterdir()] == [live.name]  # nothing set aside is left


@BOTH
def test_rows_pointing_at_missing_files_are_reported_and_kept(store):
    add_model(store, "gone")
    shutil.rmtree(store.model_path(queries.get_model(store, "gone")))
    with store.write() as session:
        session.add(Job(kind="prune", status="done", log_path="logs/job-1.log"))
        session.add(Job(kind="prune", status="queued", log_path="logs/job-2.log"))  # no log yet: fine
    report = check(store, fix=True)
    assert report.missing_files == (
        f"model 'gone' (id 1): folder artifacts/{queries.get_model(store, 'gone').path} is missing",
        "job 1: log logs/job-1.log is missing",
    )
    assert not report.clean and queries.find_model(store, "gone") is not None


@BOTH
def test_a_job_log_under_artifacts_is_claimed(store):
    (store.artifacts / "logs").mkdir()
    (store.artifacts / "logs" / "job-1.log").write_text("log")
    with store.write() as session:
        session.add(Job(kind="eval", status="running", log_path="artifacts/logs/job-1.log"))
    assert check(store).clean


def test_a_broken_reference_is_reported(store):
    add_model(store, "m")
    connection = sqlite3.connect(store.root / DB_FILE)  # a plain connection does not enforce references
    connection.execute("UPDATE model SET parent_id = 42")
    connection.commit()
    connection.close()
    assert check(store).foreign_keys == ("model row 1 points at a missing model",)


@pytest.mark.parametrize("damage", ["deleted", "truncated"])
def test_a_store_whose_database_is_gone_or_empty_is_damaged_and_fix_touches_nothing(store, damage, capsys):
    add_model(store, "kept")
    store.close()
    database = store.root / DB_FILE
    if damage == "deleted":
        database.unlink()
    else:
        database.write_bytes(b"")
    before = snapshot(store.root)

    for argv in (["store", "check", "--fix"], ["store", "check"], ["models", "list"]):
        code = main([*argv, "--store", str(store.root)])
        out, err = capsys.readouterr()
        assert (code, out) == (2, "") and err.count("\n") == 1
        assert err.startswith(f"workbench: error: {store.root} holds artifacts/ but its database")
        assert "damaged store" in err
        assert snapshot(store.root) == before  # the model's weights are all still there
    with pytest.raises(StoreError, match="damaged store"):  # a writer may not take it for a new store either
        Store.open(store.root)
    assert snapshot(store.root) == before and sorted(p.name for p in store.root.iterdir()) == sorted(
        ["artifacts"] + ([DB_FILE] if damage == "truncated" else [])
    )


def _root_page(store, table):
    connection = sqlite3.connect(store.root / DB_FILE)
    page = connection.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)).fetchone()[0]
    page_size = connection.execute("PRAGMA page_size").fetchone()[0]
    connection.close()
    return page, page_size


def test_a_corrupted_page_is_reported_by_check_and_is_one_line_elsewhere(store, capsys):
    for i in range(3):
        add_pruned(store, add_model(store, f"m{i}"), f"m{i}-pruned")
    (store.artifacts / "models" / "orphan").mkdir()
    page, page_size = _root_page(store, "model")
    store.close()
    with open(store.root / DB_FILE, "r+b") as database:  # the model table's page: a header no SQLite wrote
        database.seek((page - 1) * page_size)
        database.write(b"\x0d\x00\x00\x00\x09\xff\xff\x00" + bytes(range(200)))
    database_bytes, files = (store.root / DB_FILE).read_bytes(), snapshot(store.artifacts)

    code = main(["models", "list", "--store", str(store.root)])
    out, err = capsys.readouterr()
    assert (code, out) == (2, "")
    assert err == (f"workbench: error: the store database {store.root / DB_FILE} is damaged (database disk image is "
                   "malformed): `workbench store check` reports what\n")

    code = main(["store", "check", "--fix", "--store", str(store.root)])
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert code == 1 and err == ""
    assert f"integrity: Page {page}: free space corruption" in lines
    assert "integrity: cannot read the models and jobs: database disk image is malformed" in lines
    assert not any(line.startswith("removed") for line in lines)
    assert lines[-1].startswith(f"store {store.root}: ") and lines[-1].endswith(" problems")
    assert (store.root / DB_FILE).read_bytes() == database_bytes and snapshot(store.artifacts) == files


@BOTH
def test_a_dropped_table_is_a_schema_problem_and_fix_keeps_the_orphans(store, capsys):
    add_pruned(store, add_model(store, "base"), "pruned")
    (store.artifacts / "models" / "orphan").mkdir()
    with store.engine.begin() as connection:
        connection.exec_driver_sql("DROP TABLE layerretention")
    files = snapshot(store.artifacts)

    code = main(["runs", "show", "1", "--store", store.location])
    out, err = capsys.readouterr()
    assert (code, out) == (2, "") and err.count("\n") == 1
    said = {"sqlite": "no such table: layerretention", "postgresql": 'relation "layerretention" does not exist'}
    assert f"lacks part of the workbench schema ({said[store.engine.dialect.name]}" in err

    code = main(["store", "check", "--fix", "--store", store.location])
    out, err = capsys.readouterr()
    assert (code, err) == (1, "")
    assert out.splitlines() == [
        "schema: table layerretention is missing",
        "schema: index ix_layerretention_run_layer on layerretention is missing",
        "orphan: artifacts/models/orphan",
        f"store {store.root}: 3 problems; orphans are kept while the database is damaged (restore it from a backup "
        "first)",
    ]
    assert (store.artifacts / "models" / "orphan").is_dir() and snapshot(store.artifacts) == files
