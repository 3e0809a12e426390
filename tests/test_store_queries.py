"""Round trips of every table, and the queries the TUI and the CLI ask."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from store_fixtures import add_model, add_pruned, eval_row, model_row, retention_rows, run_row

from store import bitset, queries
from store.db import NotFoundError, StoreError
from store.tables import Evaluation, Job, LayerRetention, Model, PruningRun

pytestmark = pytest.mark.backends("sqlite", "postgresql")


def _round_trip(store, row):
    with store.write() as session:
        session.add(row)
    with store.session() as session:
        return session.get(type(row), row.id)


def _columns(row):
    return {c.name: getattr(row, c.name) for c in row.__table__.columns}


def test_every_table_round_trips(store):
    when = datetime(2025, 6, 1, 12, 30, 15, 123456, tzinfo=UTC)
    model = model_row("m", intermediate_sizes=[96, 64, 32], tags=["a", "b"], note="n", created_at=when)
    back = _round_trip(store, model)
    assert _columns(back) == _columns(model)
    assert back.created_at == when and back.created_at.tzinfo is not None

    job = Job(kind="prune", spec={"model": "m", "percent": 50.0}, status="running", progress=0.5, stage="score",
              message="layer 3/30", eta_seconds=12.5, cancel_requested=True, pid=123, host="gpu-box",
              heartbeat_at=when, started_at=when, log_path="logs/job-1.log", result={"run_id": 1})  # fmt: skip
    assert _columns(_round_trip(store, job)) == _columns(job)

    run = run_row(model.id, job_id=job.id, calibration_source="wikitext2", calibration_samples=64,
                  calibration_seq_len=512, calibration_hash="ab" * 32, peak_memory_bytes=2**30,
                  status="failed", error="RuntimeError: x")  # fmt: skip
    assert _columns(_round_trip(store, run)) == _columns(run)

    layer = retention_rows()[0]
    layer.run_id = run.id
    back = _round_trip(store, layer)
    assert _columns(back) == _columns(layer)
    assert bitset.decode(back.kept_indices) == list(range(48))

    settings = {"batch_size": 8, "apply_chat_template": False}
    evaluation = eval_row(model.id, job_id=job.id, samples=100, settings=settings, seconds=3.5)
    assert _columns(_round_trip(store, evaluation)) == _columns(evaluation)


@pytest.fixture
def lineage(store):
    """base -> (run 1, ppm) -> small; base -> (run 2, wanda, failed); small -> (run 3) -> smaller."""
    base = add_model(store, "llama-base", tags=["baseline"], parameters=300_000)
    small = add_pruned(store, base, "llama-small").model_id
    with store.write() as session:
        queries.record_failed_run(session, run_row(base, scorer="wanda", calibration_source="wikitext2"), "OOM")
    smaller = add_pruned(store, small, "llama-smaller", scorer="vow", target_kind="expansion", target_value=1.0)
    add_model(store, "qwen-other", family="qwen2", architecture="Qwen2ForCausalLM", parameters=50_000)
    return {"base": base, "small": small, "smaller": smaller.model_id, "smaller_run": smaller.run_id}


def names(models):
    return [m.name for m in models]


def test_list_models_filters_on_every_word_and_sorts(store, lineage):
    assert names(queries.list_models(store)) == ["llama-base", "llama-small", "llama-smaller", "qwen-other"]
    assert names(queries.list_models(store, "QWEN2")) == ["qwen-other"]  # family, any case
    assert names(queries.list_models(store, "baseline")) == ["llama-base"]  # a tag
    assert names(queries.list_models(store, "llama pruned")) == ["llama-small", "llama-smaller"]  # name and source
    assert names(queries.list_models(store, "%")) == []  # LIKE wildcards are plain characters
    assert names(queries.list_models(store, sort="params", descending=True))[0] == "llama-base"
    assert names(queries.list_models(store, limit=2, offset=1)) == ["llama-small", "llama-smaller"]
    for key in queries.MODEL_SORTS:
        assert len(queries.list_models(store, sort=key)) == 4


def test_a_model_info_carries_its_lineage_and_evaluation_count(store, lineage):
    with store.write() as session:
        queries.add_evaluations(session, [eval_row(lineage["small"]), eval_row(lineage["small"], task="piqa")])
    small = queries.get_model(store, "llama-small")
    assert (small.parent_name, small.made_by_run_id, small.eval_count) == ("llama-base", 1, 2)
    assert small.widths == (48, 48, 48)
    assert queries.get_model(store, "llama-base").made_by_run_id is None


def test_find_model_by_name_then_by_id(store, lineage):
    assert queries.find_model(store, "llama-small").id == lineage["small"]
    assert queries.find_model(store, str(lineage["small"])).name == "llama-small"
    assert queries.find_model(store, lineage["small"]).name == "llama-small"
    add_model(store, "1")  # a name that looks like an id wins over the id
    assert queries.find_model(store, "1").name == "1"
    assert queries.find_model(store, "nosuch") is None
    with pytest.raises(NotFoundError, match="no model named 'nosuch' in the store"):
        queries.get_model(store, "nosuch")


def test_model_by_source_and_unique_names(store, lineage):
    assert queries.model_by_source(store, "folder", "/models/llama-base").name == "llama-base"
    assert queries.model_by_source(store, "folder", "/elsewhere") is None
    assert queries.unique_model_name(store, "fresh") == "fresh"
    assert queries.unique_model_name(store, "llama-small") == "llama-small-2"
    add_model(store, "llama-small-2")
    assert queries.unique_model_name(store, "llama-small") == "llama-small-3"


def test_model_detail_has_parent_maker_children_runs_and_evaluations(store, lineage):
    detail = queries.model_detail(store, "llama-small")
    assert detail.made_by.id == 1 and detail.made_by.base_model_name == "llama-base"
    assert names(detail.children) == ["llama-smaller"]
    assert [r.id for r in detail.runs] == [lineage["smaller_run"]]
    base = queries.model_detail(store, "llama-base")
    assert base.made_by is None and {r.status for r in base.runs} == {"done", "failed"}


def test_list_runs_filters_and_sorts(store, lineage):
    runs = queries.list_runs(store)
    assert [r.id for r in runs] == [3, 2, 1]  # newest first
    assert [r.id for r in queries.list_runs(store, scorer="wanda")] == [2]
    assert [r.id for r in queries.list_runs(store, base="llama-base")] == [2, 1]
    assert [r.id for r in queries.list_runs(store, base=lineage["small"])] == [3]
    assert [r.id for r in queries.list_runs(store, status="failed")] == [2]
    assert [r.id for r in queries.list_runs(store, "wikitext")] == [2]  # the calibration source
    assert [r.id for r in queries.list_runs(store, "smaller vow")] == [3]  # result name and scorer
    assert [r.id for r in queries.list_runs(store, sort="id", descending=False)] == [1, 2, 3]
    for key in queries.RUN_SORTS:
        assert len(queries.list_runs(store, sort=key)) == 3
    with pytest.raises(NotFoundError):
        queries.list_runs(store, base="nosuch")
    failed = queries.list_runs(store, status="failed")[0]
    assert (failed.result_model_id, failed.result_model_name, failed.error) == (None, None, "OOM")


def test_pages_are_slices_of_the_whole_list(store, lineage):
    for key in queries.RUN_SORTS:
        for descending in (True, False):
            whole = queries.list_runs(store, sort=key, descending=descending)
            assert queries.list_runs(store, sort=key, descending=descending, limit=2, offset=1) == whole[1:3]
    assert queries.list_runs(store, "llama", base="llama-base", limit=1) == queries.list_runs(store, base=1)[:1]
    assert queries.count_runs(store) == 3 and queries.count_runs(store, "wikitext") == 1
    for key in queries.MODEL_SORTS:
        for descending in (True, False):
            whole = queries.list_models(store, "llama", sort=key, descending=descending)
            assert queries.list_models(store, "llama", sort=key, descending=descending, limit=2, offset=1) == whole[1:3]
    assert queries.count_models(store) == 4 and queries.count_models(store, "llama") == 3


def test_every_column_a_list_shows_sorts(store, lineage):
    by_parent = names(queries.list_models(store, sort="parent"))
    assert by_parent[-2:] == ["llama-small", "llama-smaller"]  # no parent first, then by parent name
    assert names(queries.list_models(store, sort="intermediate"))[0] in ("llama-small", "llama-smaller")
    assert [r.id for r in queries.list_runs(store, sort="result", descending=False)] == [2, 1, 3]  # none first
    assert [r.id for r in queries.list_runs(store, sort="calibration")][0] == 2


def test_run_detail_has_the_whole_configuration_and_retention(store, lineage):
    run = queries.run_detail(store, 1)
    assert (run.base_model_name, run.result_model_name) == ("llama-base", "llama-small")
    assert (run.scorer, run.divisor) == ("ppm", 8)
    assert run.stage_seconds == {"load": 0.5, "score": 0.25, "save": 0.125}
    assert run.versions["torch"] == "2.13.0"
    assert [r.layer for r in run.retention] == [0, 1, 2]
    assert run.retention[1].kept() == list(range(1, 49)) and run.retention[1].percent_kept == 50.0
    assert queries.retention(store, 1) == list(run.retention)
    with pytest.raises(NotFoundError, match="no run 99"):
        queries.run_detail(store, 99)


def test_record_run_writes_model_run_and_retention_in_the_callers_transaction(store):
    base = add_model(store, "base")
    with store.session() as session, pytest.raises(ValueError, match="store.write"):
        queries.record_run(session, run_row(base), retention_rows(), model_row("x"))
    with pytest.raises(RuntimeError), store.write() as session:
        queries.record_run(session, run_row(base), retention_rows(), model_row("x"))
        raise RuntimeError("the job failed before committing")
    with store.session() as session:
        assert session.scalar(select(func.count(Model.id))) == 1
        assert session.scalar(select(func.count(PruningRun.id))) == 0
        assert session.scalar(select(func.count(LayerRetention.id))) == 0

    with store.write() as session:
        recorded = queries.record_run(session, run_row(base), retention_rows(), model_row("x"))
    made = queries.get_model(store, "x")
    assert (made.id, made.parent_id, made.made_by_run_id) == (recorded.model_id, base, recorded.run_id)


def test_evaluations_newest_per_model_task_and_metric_unless_all_rows(store):
    a, b = add_model(store, "a"), add_model(store, "b")
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    with store.write() as session:
        queries.add_evaluations(
            session,
            [
                eval_row(a, value=0.1, created_at=t0),
                eval_row(a, value=0.2, created_at=t0 + timedelta(days=1)),  # newer: replaces 0.1
                eval_row(a, "piqa", "acc,none", 0.7, created_at=t0),
                eval_row(b, value=0.3, created_at=t0),
                eval_row(b, value=0.35, created_at=t0),  # same time: the later row wins
            ],
        )
    newest = queries.evaluations(store, [a])
    assert [(e.task, e.value) for e in newest] == [("arc_easy", 0.2), ("piqa", 0.7)]  # newest first
    assert len(queries.evaluations(store, [a], all_rows=True)) == 3
    assert len(queries.evaluations(store)) == 3
    assert newest[0].model_name == "a"

    rows = queries.aligned_evaluations(store, [a, b])
    assert [(r.task, r.metric) for r in rows] == [("arc_easy", "acc_norm,none"), ("piqa", "acc,none")]
    assert {m: e.value for m, e in rows[0].cells.items()} == {a: 0.2, b: 0.35}
    assert set(rows[1].cells) == {a}


def test_remove_model_refuses_while_needed_and_changes_nothing(store, lineage):
    with store.write() as session:
        queries.add_evaluations(session, [eval_row(lineage["small"])])
    folder = store.model_path(queries.get_model(store, "llama-small"))
    with pytest.raises(StoreError) as refused:
        queries.remove_model(store, "llama-small")
    message = str(refused.value)
    assert "run 1 made it" in message and "1 run pruned it (3)" in message
    assert "1 evaluation" in message and "child model (llama-smaller)" in message
    assert folder.is_dir() and queries.find_model(store, "llama-small") is not None


def test_remove_model_with_force_deletes_or_unlinks_what_depends_on_it(store, lineage):
    with store.write() as session:
        queries.add_evaluations(session, [eval_row(lineage["small"]), eval_row(lineage["smaller"])])
    folder = store.model_path(queries.get_model(store, "llama-small"))
    removal = queries.remove_model(store, "llama-small", force=True)
    assert removal.folder_removed and not folder.exists()
    assert (removal.runs_deleted, removal.runs_detached) == ((lineage["smaller_run"],), (1,))
    assert (removal.evaluations_deleted, removal.children_detached) == (1, ("llama-smaller",))

    assert queries.find_model(store, "llama-small") is None
    assert queries.run_detail(store, 1).result_model_id is None  # the history of what was tried stays
    with pytest.raises(NotFoundError):
        queries.run_detail(store, lineage["smaller_run"])
    smaller = queries.get_model(store, "llama-smaller")
    assert (smaller.parent_id, smaller.made_by_run_id, smaller.eval_count) == (None, None, 1)
    with store.session() as session:
        assert session.scalar(select(func.count(LayerRetention.id))) == 3  # run 1's rows only
        assert session.scalar(select(func.count(Evaluation.id))) == 1


def test_remove_a_model_nothing_depends_on(store, lineage):
    folder = store.model_path(queries.get_model(store, "qwen-other"))
    removal = queries.remove_model(store, str(lineage["smaller"] + 1))  # by id
    assert removal.model.name == "qwen-other" and removal.folder_removed and not folder.exists()
