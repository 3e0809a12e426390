"""Schema migrations: head matches store/tables.py, Store.open knows the revisions Alembic knows
(without importing it unless it migrates), and an older store upgrades keeping its rows."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError
from sqlmodel import SQLModel
from store_fixtures import eval_row

from store import bitset, queries
from store.check import check
from store.db import DB_FILE, MIGRATIONS, Store, head_revision, known_revisions

REPO = Path(__file__).resolve().parents[1]


def _alembic(folder, revision, direction=command.upgrade):
    """Move a store's database to `revision` the plain Alembic way, outside Store.open."""
    engine = create_engine(f"sqlite:///{folder / DB_FILE}")
    with engine.begin() as connection:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = connection
        direction(config, revision)
    engine.dispose()


def test_head_matches_the_tables(store):
    with store.engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)
    assert diff == [], f"store/tables.py and the migrations differ: write a revision for {diff}"


def test_store_open_knows_the_chain_of_revisions_alembic_reads():
    scripts = ScriptDirectory(str(MIGRATIONS))
    chain = list(reversed(list(scripts.walk_revisions())))  # oldest first
    assert known_revisions() == tuple(r.revision for r in chain)
    assert [r.down_revision for r in chain] == [None, *known_revisions()[:-1]]  # each revises the one before
    assert head_revision() == scripts.get_current_head()


def test_alembic_loads_only_when_there_is_a_migration_to_run(tmp_path):
    code = "import sys; from store.db import Store; Store.open(sys.argv[1]).close(); print('alembic' in sys.modules)"

    def opening_loads_alembic(location: str) -> bool:
        env = os.environ | {"PYTHONPATH": str(REPO)}
        done = subprocess.run([sys.executable, "-c", code, location], env=env, capture_output=True, text=True,
                              check=True)  # fmt: skip
        return done.stdout.strip() == "True"

    assert opening_loads_alembic(str(tmp_path / "s"))  # created: migrated to head
    assert not opening_loads_alembic(str(tmp_path / "s"))
    assert not opening_loads_alembic(f"sqlite:///{tmp_path / 's' / DB_FILE}")  # a URL store asks the database


def _fill_0001(folder):
    """Rows written by a workbench of the first milestone (schema 0001: no jobs)."""
    now = datetime(2025, 1, 2, 3, 4, 5).isoformat(sep=" ")
    connection = sqlite3.connect(folder / DB_FILE)
    connection.execute("PRAGMA foreign_keys = ON")
    model = (
        "INSERT INTO model (id, name, source, source_ref, family, architecture, num_layers, hidden_size, "
        "intermediate_size, intermediate_sizes, expansion, parameters, dtype, size_bytes, path, parent_id, "
        "created_at, tags, note) VALUES (?, ?, ?, '', 'llama', 'LlamaForCausalLM', 2, 32, 96, ?, 3.0, 1000, "
        "'float32', 10, ?, ?, ?, ?, '')"
    )
    connection.execute(model, (1, "old-base", "folder", None, "models/old-base", None, now, '["old"]'))
    connection.execute(model, (2, "old-pruned", "pruned", "[48, 40]", "models/old-pruned", 1, now, "[]"))
    connection.execute(
        "INSERT INTO pruningrun (id, base_model_id, result_model_id, scorer, target_kind, target_value, divisor, "
        "allocation, layers, device, dtype, versions, stage_seconds, status, created_at) VALUES "
        "(1, 1, 2, 'wanda', 'percent', 50, 8, 'global', 'all', 'cpu', 'float32', '{}', '{\"score\": 1.5}', "
        "'done', ?)",
        (now,),
    )
    for layer, kept in ((0, 48), (1, 40)):
        connection.execute(
            "INSERT INTO layerretention (run_id, layer, original_width, kept_width, percent_kept, kept_indices) "
            "VALUES (1, ?, 96, ?, ?, ?)",
            (layer, kept, 100 * kept / 96, bitset.encode(range(kept), 96)),
        )
    connection.execute(
        "INSERT INTO evaluation (model_id, harness, harness_version, task, metric, value, settings, device, dtype, "
        "created_at) VALUES (2, 'lm-eval', '0.4.9', 'piqa', 'acc,none', 0.6, '{}', 'cpu', 'float32', ?)",
        (now,),
    )
    connection.commit()
    connection.close()


def test_a_store_at_schema_0001_upgrades_on_open_and_keeps_its_rows(tmp_path):
    folder = tmp_path / "old"
    folder.mkdir()
    _alembic(folder, "0001")
    _fill_0001(folder)

    with Store.open(folder) as store:
        with store.engine.connect() as connection:
            assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0005"
            indexes = set(connection.execute(text("SELECT name FROM sqlite_master WHERE type = 'index'")).scalars())
        assert {"ix_evaluation_model_task_metric", "ix_pruningrun_scorer", "ix_pruningrun_created_at"} <= indexes

        pruned = queries.get_model(store, "old-pruned")
        assert (pruned.parent_name, pruned.made_by_run_id, pruned.intermediate_sizes) == ("old-base", 1, (48, 40))
        assert pruned.created_at == datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
        assert queries.get_model(store, "old-base").tags == ("old",)
        run = queries.run_detail(store, 1)
        assert (run.scorer, run.job_id, run.stage_seconds) == ("wanda", None, {"score": 1.5})
        assert [r.kept() for r in run.retention] == [list(range(48)), list(range(40))]
        [evaluation] = queries.evaluations(store, [pruned.id])
        assert (evaluation.task, evaluation.value, evaluation.job_id) == ("piqa", 0.6, None)

        # The rebuilt tables still enforce their references, the new job_id ones included.
        with pytest.raises(IntegrityError), store.write() as session:
            queries.add_evaluations(session, [eval_row(pruned.id, job_id=999)])
        report = check(store)
        assert report.integrity == () and report.foreign_keys == ()


def test_downgrading_to_0001_and_opening_again_round_trips(store):
    folder = store.root
    store.close()
    _alembic(folder, "0001", command.downgrade)
    connection = sqlite3.connect(folder / DB_FILE)
    tables = {r[0] for r in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    connection.close()
    assert "job" not in tables
    with Store.open(folder) as reopened, reopened.engine.connect() as connection:
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0005"


def test_a_store_at_schema_0003_upgrades_keeping_its_jobs(tmp_path):
    """0004 rebuilds the job table (a new foreign key): its rows, and what points at them, stay."""
    folder = tmp_path / "old"
    folder.mkdir()
    _alembic(folder, "0003")
    now = datetime(2025, 1, 2, 3, 4, 5).isoformat(sep=" ")
    connection = sqlite3.connect(folder / DB_FILE)
    connection.execute(
        "INSERT INTO job (id, kind, spec, status, stage, progress, message, cancel_requested, created_at, result, "
        "device, peak_memory_bytes) VALUES (7, 'prune', '{\"request\": {}}', 'done', 'save', 1.0, 'done', 0, ?, "
        "'{\"model_id\": 1}', 'cpu', 1024)",
        (now,),
    )
    connection.commit()
    connection.close()
    with Store.open(folder) as store:
        from store import jobs

        job = jobs.get_job(store, 7)
        assert (job.status, job.result, job.device, job.after_job_id) == ("done", {"model_id": 1}, "cpu", None)
        assert check(store).foreign_keys == ()
