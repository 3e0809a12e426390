"""`store copy`: a folder store into PostgreSQL and back, every row and file equal; refusals before
anything is written; a merge that renumbers rows and what points at them."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlmodel import SQLModel
from store_fixtures import add_model, add_pruned, snapshot
from study_store import NAME, fill_study

from store import jobs, queries, studies
from store.check import check
from store.db import Store
from store.tables import Setting
from workbench.cli.main import main


def filled(store: Store) -> dict[str, int]:
    """A store with models (and their files), runs, retention, evaluations, a study, and jobs
    done (with a log and a result naming rows), queued after another, and cancelled and retried."""
    ids = fill_study(store)
    with store.session() as session:
        paths = session.scalars(select(queries.Model.path)).all()
    for path in paths:  # the study's models were made row by row: give them their files
        (store.artifacts / path).mkdir(parents=True)
        (store.artifacts / path / "config.json").write_text(f'{{"path": "{path}"}}')
    base = queries.get_model(store, "smol-base").id
    pruned = add_pruned(store, base, "with-files", scorer="wanda")
    prune = jobs.add_job(store, "prune", {"request": {"model": "smol-base"}})
    claimed = jobs.claim(store, 4321, job_id=prune)
    assert claimed is not None
    (store.root / claimed.log_path).write_text("the log of a pruning\n")
    jobs.finish(store, prune, "done", "done", result={"run_id": pruned.run_id, "model_id": pruned.model_id})
    evaluation = jobs.add_job(store, "eval", {"request": {"models": [f"job:{prune}"]}}, after=prune)
    failed = jobs.add_job(store, "import", {"request": {"source": "nowhere"}})
    jobs.request_cancel(store, failed)
    jobs.retry(store, failed)  # the cancelled job names its retry
    return ids | {"prune_job": prune, "eval_job": evaluation, "failed_job": failed, "run": pruned.run_id,
                  "model": pruned.model_id}


def rows(store: Store) -> dict[str, list[dict]]:
    """Every row of every table, by id (the store's own settings aside)."""
    found = {}
    with store.session() as session:
        for table in SQLModel.metadata.sorted_tables:
            if table.name != Setting.__tablename__:
                ordered = select(table).order_by(*table.primary_key)
                found[table.name] = [dict(r._mapping) for r in session.execute(ordered)]
    return found


def files(store: Store) -> dict[str, bytes]:
    return {k: v for k, v in snapshot(store.artifacts).items() if not k.startswith("tmp/")}


@pytest.mark.backends("sqlite")
def test_a_folder_store_goes_to_postgresql_and_back_with_every_row_and_file(store, postgres, tmp_path, capsys):
    filled(store)
    database = postgres.new_database()
    code = main(["store", "copy", store.location, database, "--files", str(tmp_path / "shared")])
    out, err = capsys.readouterr()
    assert (code, err) == (0, ""), err
    assert "model: 8 rows" in out and out.splitlines()[-1].endswith("store check there: clean")
    with Store.open(database, files=tmp_path / "shared") as middle:
        assert middle.engine.dialect.name == "postgresql" and middle.root == tmp_path / "shared"
        assert rows(middle) == rows(store) and files(middle) == files(store)
        # New rows go after the copied ones (the id sequences moved on).
        assert add_model(middle, "after-the-copy") == max(r["id"] for r in rows(store)["model"]) + 1
        queries.remove_model(middle, "after-the-copy")

    back = tmp_path / "back"
    code = main(["store", "copy", database, str(back)])
    out, err = capsys.readouterr()
    assert (code, err) == (0, ""), err
    with Store.open(back) as final:
        assert rows(final) == rows(store) and files(final) == files(store)
        assert check(final).clean
        study = studies.get_study(final, NAME)
        assert len(studies.items(final, study.id)) == len(studies.items(store, study.id))
    postgres.drop_database(database)


@pytest.mark.backends("sqlite", "postgresql")
def test_a_copy_is_refused_before_anything_is_written(store, tmp_path, capsys):
    ids = filled(store)
    target = tmp_path / "target"
    with Store.open(target) as other:
        add_model(other, "already-here")
    before = snapshot(target)
    assert main(["store", "copy", store.location, str(target)]) == 2
    out, err = capsys.readouterr()
    assert err.startswith("workbench: error: the target") and "already holds rows (1 in model)" in err
    assert "--merge" in err
    assert err.count("\n") == 1 and snapshot(target) == before

    jobs.claim(store, 4321, job_id=ids["eval_job"])  # now a job runs in the source
    assert main(["store", "copy", store.location, str(tmp_path / "new")]) == 2
    assert f"job {ids['eval_job']} runs in the source store" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()


@pytest.mark.backends("sqlite", "postgresql")
def test_a_merge_renumbers_every_row_and_what_points_at_it(store, tmp_path, capsys):
    """Into a store holding rows of its own (a SQLite one, or PostgreSQL when the source is a folder)."""
    target = tmp_path / "target"
    with Store.open(target) as other:
        first = add_model(other, "theirs")
        add_pruned(other, first, "theirs-pruned")
        jobs.add_job(other, "prune", {})
    ids = filled(store)
    source_rows = rows(store)

    assert main(["store", "copy", store.location, str(target), "--merge"]) == 0
    assert "merged into" in capsys.readouterr().out
    with Store.open(target) as merged:
        assert check(merged).clean
        for table, found in rows(merged).items():
            assert len(found) == len(source_rows[table]) + {"model": 2, "pruningrun": 1, "layerretention": 3,
                                                            "job": 1}.get(table, 0), table  # fmt: skip
        pruned = queries.get_model(merged, "with-files")  # renumbered, its lineage and files followed
        assert pruned.parent_name == "smol-base" and merged.model_path(pruned).is_dir()
        assert pruned.id != ids["model"]
        run = queries.run_detail(merged, pruned.made_by_run_id)
        assert run.base_model_name == "smol-base" and len(run.retention) == 3
        done = next(j for j in jobs.list_jobs(merged) if j.kind == "prune" and j.status == "done")
        assert done.result == {"run_id": run.id, "model_id": pruned.id}  # the ids in its JSON followed
        assert (merged.root / done.log_path).read_text() == "the log of a pruning\n"
        assert done.log_path == jobs.log_relpath(done.id)
        waiting = next(j for j in jobs.list_jobs(merged) if j.kind == "eval")
        assert waiting.after_job_id == done.id and waiting.request == {"models": [f"job:{done.id}"]}
        cancelled, retried = (next(j for j in jobs.list_jobs(merged) if j.kind == "import" and j.status == status)
                              for status in ("cancelled", "queued"))  # fmt: skip
        assert jobs.retried_by(cancelled) == retried.id != ids["failed_job"] + 1
        study = studies.get_study(merged, NAME)
        assert study.base_model_id == queries.get_model(merged, "smol-base").id
        assert {i.run_id for i in studies.items(merged, study.id) if i.run_id} <= {
            r.id for r in queries.list_runs(merged)}  # fmt: skip

    capsys.readouterr()
    assert main(["store", "copy", store.location, str(target), "--merge"]) == 2  # again: every name is there
    err = capsys.readouterr().err
    assert "both stores hold a model with name 'smol-base'" in err and "(and 7 more)" in err
