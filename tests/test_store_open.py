"""Opening a store: where it is, its SQLite settings, what it refuses, artifact folders."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text
from store_fixtures import add_model, model_row, snapshot

from store import queries
from store.db import DB_FILE, STORE_ID_FILE, Store, StoreError, head_revision

REPO = Path(__file__).resolve().parents[1]


def test_a_new_store_is_a_folder_with_the_database_and_artifacts(tmp_path):
    with Store.open(tmp_path / "a" / "store") as store:
        assert store.root == tmp_path / "a" / "store"
        assert (store.root / DB_FILE).is_file()
        assert store.artifacts == store.root / "artifacts" and store.artifacts.is_dir()
        with store.session() as session:
            pragma = lambda name: session.execute(text(f"PRAGMA {name}")).scalar()  # noqa: E731
            assert pragma("journal_mode") == "wal"
            assert pragma("foreign_keys") == 1
            assert pragma("busy_timeout") == 30_000


def test_the_location_comes_from_the_argument_else_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_STORE", str(tmp_path / "from-env"))
    with Store.open() as store:
        assert store.root == tmp_path / "from-env"
    with Store.open(tmp_path / "given") as store:
        assert store.root == tmp_path / "given"


def test_a_database_url_keeps_its_files_where_workbench_artifacts_says(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_ARTIFACTS", str(tmp_path / "files"))
    with pytest.raises(StoreError) as refused:  # a URL's folder is not made behind the user's back
        Store.open(f"sqlite:///{tmp_path / 'db' / 'wb.sqlite'}")
    database = tmp_path / "db" / "wb.sqlite"
    assert str(refused.value) == f"folder {database.parent} for the database {database} does not exist"
    assert sorted(tmp_path.iterdir()) == []
    (tmp_path / "db").mkdir()
    with Store.open(f"sqlite:///{tmp_path / 'db' / 'wb.sqlite'}") as store:
        add_model(store, "m")
        assert (tmp_path / "db" / "wb.sqlite").is_file()
        assert store.root == tmp_path / "files"
        assert store.model_path(queries.get_model(store, "m")).parent.parent == tmp_path / "files" / "artifacts"


def test_reopening_keeps_rows_and_create_false_wants_a_store(tmp_path):
    with Store.open(tmp_path / "s") as store:
        add_model(store, "kept")
    with Store.open(tmp_path / "s", create=False) as store:
        assert [m.name for m in queries.list_models(store)] == ["kept"]
    with pytest.raises(StoreError, match="no workbench store at"):
        Store.open(tmp_path / "missing", create=False)
    assert not (tmp_path / "missing").exists()


def _foreign_sqlite(path, journal_mode="delete"):
    connection = sqlite3.connect(path)
    connection.execute(f"PRAGMA journal_mode = {journal_mode}")
    connection.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    connection.execute("INSERT INTO notes (body) VALUES ('mine')")
    connection.commit()
    connection.close()


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("regular-file", "is a file, not a store folder"),
        ("text-database", "is not a SQLite database"),
        ("foreign-sqlite", "tables of its own"),
        ("foreign-sqlite-wal", "tables of its own"),
        ("foreign-sqlite-url", "tables of its own"),
    ],
)
def test_something_that_is_not_a_store_is_refused_and_left_untouched(tmp_path, case, message):
    folder = tmp_path / "place"
    folder.mkdir()
    location = folder / DB_FILE if case == "regular-file" else folder
    if case == "regular-file":
        location.write_text("just some text\n")
    elif case == "text-database":
        (folder / DB_FILE).write_text("SQLite? no, a shopping list\n")
    elif case == "foreign-sqlite-url":
        _foreign_sqlite(folder / "other.db")
        location = f"sqlite:///{folder / 'other.db'}"
    else:
        _foreign_sqlite(folder / DB_FILE, "wal" if case.endswith("wal") else "delete")
    before = snapshot(folder)

    with pytest.raises(StoreError, match=message) as refused:
        Store.open(location)
    assert "\n" not in str(refused.value)
    assert snapshot(folder) == before  # same bytes, and no -wal, -shm or artifacts/ appeared


def _set_revision(folder, revision):
    connection = sqlite3.connect(folder / DB_FILE)
    connection.execute("UPDATE alembic_version SET version_num = ?", (revision,))
    connection.commit()
    connection.close()


def test_a_newer_schema_is_refused_and_left_untouched(tmp_path):
    folder = tmp_path / "s"
    with Store.open(folder) as store:
        add_model(store, "m")
    _set_revision(folder, "0099")
    before = snapshot(folder)
    with pytest.raises(StoreError) as refused:
        Store.open(folder)
    expected = f"store schema 0099 is newer than this workbench knows (head {head_revision()}): upgrade the workbench"
    assert str(refused.value) == expected
    assert snapshot(folder) == before


def test_a_schema_version_no_workbench_made_is_not_a_store(tmp_path):
    folder = tmp_path / "s"
    Store.open(folder).close()
    _set_revision(folder, "3fa1c9e2b7d4")
    before = snapshot(folder)
    with pytest.raises(StoreError, match="no workbench knows: not a workbench store"):
        Store.open(folder)
    assert snapshot(folder) == before


def test_a_write_transaction_holds_the_write_lock_from_its_start(store):
    other = sqlite3.connect(store.root / DB_FILE, timeout=0, isolation_level=None)
    with store.write() as session:
        session.connection()  # begun, nothing written yet
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("BEGIN IMMEDIATE")
    with store.session() as session:
        session.connection()  # a read transaction leaves writers free
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
    other.close()


def test_write_commits_at_the_end_and_rolls_back_on_an_exception(store):
    with store.write() as session:
        session.add(model_row("committed"))
    with pytest.raises(RuntimeError), store.write() as session:
        session.add(model_row("rolled-back"))
        session.flush()
        raise RuntimeError("stop")
    assert [m.name for m in queries.list_models(store)] == ["committed"]


def test_an_artifact_appears_whole_under_its_kind_or_not_at_all(store):
    with store.new_artifact("models") as artifact:
        assert artifact.path.parent == store.artifacts / "tmp"
        (artifact.path / "weights").write_text("w")
        assert not artifact.final.exists()
    assert artifact.path == store.artifacts / artifact.relpath and artifact.relpath.startswith("models/")
    assert (artifact.path / "weights").read_text() == "w"

    with pytest.raises(RuntimeError), store.new_artifact("models") as failed:
        (failed.path / "weights").write_text("half")
        raise RuntimeError("killed halfway")
    assert not failed.path.exists() and not failed.final.exists()

    with pytest.raises(RuntimeError), store.new_artifact("models") as unrecorded:
        unrecorded.commit()  # in place, but the row naming it never committed
        raise RuntimeError("the row's transaction failed")
    assert not unrecorded.final.exists()

    with pytest.raises(RuntimeError), store.new_artifact("models") as recorded:
        recorded.keep()
        raise RuntimeError("after the row was committed")
    assert recorded.final.is_dir()
    assert list((store.artifacts / "tmp").iterdir()) == []


@pytest.mark.parametrize("kind", ["tmp", "../up", "Models", ""])
def test_an_artifact_kind_is_a_plain_name(store, kind):
    with pytest.raises(ValueError), store.new_artifact(kind):
        pass


@pytest.mark.backends("postgresql")
def test_a_database_store_records_its_files_folder_so_other_hosts_need_not_be_told(location, tmp_path, monkeypatch):
    files = tmp_path / "store"  # (the location fixture's $WORKBENCH_ARTIFACTS)
    with Store.open(location) as store:
        add_model(store, "m")
        assert store.root == files and (files / STORE_ID_FILE).is_file()
    monkeypatch.delenv("WORKBENCH_ARTIFACTS")
    with Store.open(location) as store:  # a host told nothing finds the folder the database records
        assert store.root == files and store.model_path(queries.get_model(store, "m")).is_dir()
        assert store.environment()["WORKBENCH_ARTIFACTS"] == str(files)  # what its job processes are told

    (tmp_path / "elsewhere").mkdir()
    monkeypatch.setenv("WORKBENCH_ARTIFACTS", str(tmp_path / "elsewhere"))  # e.g. a mount point that is empty
    with pytest.raises(StoreError, match=r"elsewhere \(so says \$WORKBENCH_ARTIFACTS\) holds no store's files"):
        Store.open(location)
    monkeypatch.delenv("WORKBENCH_ARTIFACTS")
    files.rename(tmp_path / "moved")  # a host where the folder is not mounted
    with pytest.raises(StoreError, match=r"are in \S+/store \(so says its database\), which is not on this host"):
        Store.open(location)
    assert not files.exists()  # not made anew behind the user's back
    monkeypatch.setenv("WORKBENCH_ARTIFACTS", str(tmp_path / "moved"))  # mounted elsewhere on this host
    with Store.open(location) as store:
        assert store.model_path(queries.get_model(store, "m")).is_dir()


@pytest.mark.backends("postgresql")
def test_a_new_database_store_refuses_a_folder_holding_another_stores_files(location, postgres, tmp_path, monkeypatch):
    Store.open(location).close()
    other = postgres.new_database()
    with pytest.raises(StoreError, match="holds artifacts/ but its database .* is missing or empty"):
        Store.open(other)  # (the same $WORKBENCH_ARTIFACTS)
    postgres.drop_database(other)


@pytest.mark.parametrize(("url", "said"), [
    ("postgresql://someone@dbhost/workbench", "a PostgreSQL store needs the psycopg driver, which is not installed: "
                                              "pip install 'width-pruning-workbench[postgres]'"),
    ("postgresql+psycopg2://someone@dbhost/workbench", "the driver of postgresql+psycopg2:// URLs is not installed"),
])  # fmt: skip
def test_a_url_whose_driver_is_missing_gets_one_line_naming_the_extra(url, said, tmp_path):
    hide_psycopg = "import sys; sys.modules['psycopg'] = None; from workbench.cli.main import main; sys.exit(main())"
    done = subprocess.run([sys.executable, "-c", hide_psycopg, "--store", url, "models", "list"], capture_output=True,
                          text=True, env=os.environ | {"PYTHONPATH": str(REPO)}, cwd=tmp_path)  # fmt: skip
    assert done.returncode == 2 and done.stdout == "" and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(f"workbench: error: {said}")
    assert list(tmp_path.iterdir()) == []
